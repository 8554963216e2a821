"""Chunk tag sets (IOB1, IOB2 a.k.a. BIO, BIOES): which one labels.txt is, and the entities
of a batch of label sequences, counted in the graph.

A chunk (an entity) is (type, first word, last word). Where chunks start and end follows
conlleval's rules as seqeval's default mode writes them (`start_of_chunk`, `end_of_chunk`):
an I- after O, after another type or at the start of a sentence starts a chunk, a type
change inside a chunk ends it, S- and E- close it. These rules read any label sequence,
well-formed or not, and are the same for every scheme; the scheme only says which
sequences a decoder may emit (`Tables.allowed`, used by trainer/decode.py).

Both rules are functions of (previous label, label), so they are [L, L] tables, built here
in Python from the label names, and a batch is counted with gathers and sums:

    labels          O  B-PER  I-PER  I-LOC  O
    chunk starts    0  1      0      1      0
    chunk ends      0  0      1      1      0    (at a chunk's last word)
    chunks          (PER, 1, 2), (LOC, 3, 3)

`<pad>` and `<unk>` read as O: a gold label that the train split never had (so `<unk>`)
is no entity, for lack of a name.
"""

import dataclasses
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

import contract
from trainer.config import TAG_SCHEMES

SCHEMES = TAG_SCHEMES
CHUNK_SCHEMES = ("iob1", "iob2", "bioes")
OUTSIDE = "O"
KINDS = "OBIES"  # a label's kind is its index here: O=0, B=1, I=2, E=3, S=4
_O, _B, _I, _E, _S = range(len(KINDS))
SUM_KEYS = ("chunks_correct", "chunks_gold", "chunks_predicted")


class SchemeError(ValueError):
  """--tag_scheme names a scheme that labels.txt does not fit."""


def split_label(label: str) -> Optional[Tuple[str, str]]:
  """(kind, type) of a chunk label, or None for a label of no chunk scheme.

  >>> split_label("B-PER"), split_label("O"), split_label("<unk>"), split_label("NOUN")
  (('B', 'PER'), ('O', ''), ('O', ''), None)
  """
  if label == OUTSIDE or label in contract.RESERVED_TOKENS:
    return OUTSIDE, ""
  if len(label) >= 2 and label[0] in "BIES" and label[1] == "-":
    return label[0], label[2:] or "_"  # "B-" has seqeval's type "_"
  return None


def real_labels(labels: Sequence[str]) -> List[str]:
  return list(labels[contract.NUM_RESERVED:])


def candidate(labels: Sequence[str]) -> str:
  """What labels.txt alone says: "none", "bioes", or "iob" (IOB1 or IOB2: the data decides).

  A chunk tag set has only O and B-/I-/E-/S- labels, at least one B- or I-, and an O.

  >>> candidate(["<pad>", "<unk>", "O", "B-PER", "I-PER"]), candidate(["<pad>", "<unk>", "O", "S-X", "B-X"])
  ('iob', 'bioes')
  """
  parts = [split_label(label) for label in real_labels(labels)]
  if not parts or None in parts or OUTSIDE not in real_labels(labels):
    return "none"
  kinds = {kind for kind, _ in parts}
  if not kinds & {"B", "I"}:
    return "none"
  return "bioes" if kinds & {"E", "S"} else "iob"


def check_scheme(scheme: str, labels: Sequence[str]) -> None:
  """Raises SchemeError when a chunk scheme named by the user does not fit labels.txt."""
  if scheme not in CHUNK_SCHEMES:
    return
  found = candidate(labels)
  if found == "none":
    raise SchemeError(f"--tag_scheme {scheme}: labels.txt is not a chunk tag set (it needs O and only "
                      "B-X/I-X/E-X/S-X labels besides it); use --tag_scheme none")
  if found == "bioes" and scheme != "bioes":
    raise SchemeError(f"--tag_scheme {scheme}: labels.txt has E- or S- labels; use --tag_scheme bioes")


# --- the tables ------------------------------------------------------------------------

def _start_of_chunk(prev_kind: str, kind: str, prev_type: str, type_: str) -> bool:
  """seqeval.metrics.sequence_labeling.start_of_chunk (conlleval's rules, with S-)."""
  return (kind in "BS" or (prev_kind, kind) in {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"),
                                                ("O", "E"), ("O", "I")}
          or (kind != "O" and prev_type != type_))


def _end_of_chunk(prev_kind: str, kind: str, prev_type: str, type_: str) -> bool:
  """seqeval.metrics.sequence_labeling.end_of_chunk: a chunk ends at the previous word."""
  return (prev_kind in "ES" or (prev_kind, kind) in {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"),
                                                      ("I", "S"), ("I", "O")}
          or (prev_kind != "O" and prev_type != type_))


def _allowed(scheme: str, prev: Tuple[str, str], cur: Tuple[str, str]) -> bool:
  """Whether `cur` may follow `prev` in a well-formed sequence; prev ("O", "") also stands
  for the start of a sentence, cur ("O", "") for its end (see Tables)."""
  (prev_kind, prev_type), (kind, type_) = prev, cur
  if scheme == "iob2":  # I-X continues a B-X or I-X
    return kind != "I" or (prev_kind in "BI" and prev_type == type_)
  if scheme == "iob1":  # B-X only separates two chunks of type X
    return kind != "B" or (prev_kind in "BI" and prev_type == type_)
  # bioes: inside a chunk (after B-X, I-X) only I-X or E-X; outside only O, B-, S-.
  if prev_kind in "BI":
    return kind in "IE" and type_ == prev_type
  return kind in "OBS"


@dataclasses.dataclass(frozen=True)
class Tables:
  """A label set's chunk rules and, for a scheme, its well-formed sequences, as arrays.

  Indexed by label id (0 <pad>, 1 <unk>, real labels from 2). `allowed[prev, cur]`,
  `allowed_start[cur]`, `allowed_end[prev]`: what a decoder may emit. <pad> never; <unk>
  only in scheme "none" (it is no chunk tag). `encode[type, kind]`: the label id of a kind
  of a type (type 0 is O's), where labels.txt has it, else O's id.
  """
  scheme: str
  labels: Tuple[str, ...]
  kinds: np.ndarray  # [L] int32, index into KINDS
  types: np.ndarray  # [L] int32, 0 for O, <pad>, <unk>; chunk types from 1
  chunk_start: np.ndarray  # [L, L] bool, (previous label, label): a chunk starts at label
  chunk_end: np.ndarray  # [L, L] bool, (label, next label): a chunk ends at label
  allowed: np.ndarray  # [L, L] bool, (previous label, label)
  allowed_start: np.ndarray  # [L] bool
  allowed_end: np.ndarray  # [L] bool
  encode: np.ndarray  # [types, 5] int64

  @property
  def entities(self) -> bool:
    """Whether chunks are counted (a chunk scheme), not only decoding constrained."""
    return self.scheme in CHUNK_SCHEMES


def build_tables(labels: Sequence[str], scheme: str) -> Tables:
  """The tables of labels.txt's entries under a scheme (a chunk scheme, or "none": every
  real label may follow every other; no chunks).

  >>> t = build_tables(["<pad>", "<unk>", "O", "B-PER", "I-PER"], "iob2")
  >>> t.allowed[2].tolist(), t.allowed_start.tolist(), t.chunk_start[2].tolist()
  ([False, False, True, True, False], [False, False, True, True, False], [False, False, False, True, True])
  """
  labels = tuple(labels)
  size = len(labels)
  real = np.arange(size) >= contract.NUM_RESERVED
  if scheme not in CHUNK_SCHEMES + ("none",):
    raise ValueError(f"tag scheme {scheme!r}: not one to decode with (resolve 'auto' first: `resolve`)")
  if scheme == "none":
    everything = np.ones([size, size], bool)
    usable = np.arange(size) != contract.PAD_ID
    nothing = np.zeros([size, size], bool)
    return Tables(scheme, labels, np.zeros([size], np.int32), np.zeros([size], np.int32), nothing, nothing,
                  everything & usable[None, :] & usable[:, None], usable, usable.copy(),
                  np.zeros([1, len(KINDS)], np.int64))
  check_scheme(scheme, labels)
  parts = [split_label(label) for label in labels]
  type_names = sorted({type_ for kind, type_ in parts if kind != OUTSIDE})
  type_ids = {name: index + 1 for index, name in enumerate(type_names)}
  kinds = np.array([KINDS.index(kind) for kind, _ in parts], np.int32)
  types = np.array([type_ids.get(type_, 0) if kind != OUTSIDE else 0 for kind, type_ in parts], np.int32)
  # seqeval's type of O is "_" and of the sentence start "": neither rule depends on them.
  named = [(kind, type_ if kind != OUTSIDE else "_") for kind, type_ in parts]
  chunk_start = np.array([[_start_of_chunk(p[0], c[0], p[1], c[1]) for c in named] for p in named])
  chunk_end = np.array([[_end_of_chunk(p[0], c[0], p[1], c[1]) for c in named] for p in named])
  allowed = np.array([[_allowed(scheme, p, c) for c in parts] for p in parts]) & real[:, None] & real[None, :]
  outside = (OUTSIDE, "")
  allowed_start = np.array([_allowed(scheme, outside, c) for c in parts]) & real
  allowed_end = np.array([_allowed(scheme, p, outside) for p in parts]) & real  # bioes: not on B- or I-
  encode = np.full([len(type_names) + 1, len(KINDS)], labels.index(OUTSIDE), np.int64)
  for label_id, (kind, type_) in enumerate(parts):
    if kind != OUTSIDE and label_id >= contract.NUM_RESERVED:
      encode[type_ids[type_], KINDS.index(kind)] = label_id
  return Tables(scheme, labels, kinds, types, chunk_start, chunk_end, allowed, allowed_start, allowed_end, encode)


# --- counting chunks in the graph --------------------------------------------------------

def _boundaries(tables: Tables, labels: tf.Tensor, lengths: tf.Tensor):
  """Chunk starts and ends at each position of left-aligned rows: ([B, T] bool, [B, T] bool).

  Past a row's length every label reads as <pad> (O), which also closes its last chunk.
  """
  width = tf.shape(labels)[1]
  inside = tf.range(width)[None, :] < tf.cast(lengths, tf.int32)[:, None]
  labels = tf.where(inside, tf.cast(labels, tf.int32), contract.PAD_ID)
  outside = tf.fill([tf.shape(labels)[0], 1], contract.PAD_ID)
  previous = tf.concat([outside, labels[:, :-1]], axis=1)
  following = tf.concat([labels[:, 1:], outside], axis=1)
  starts = tf.gather_nd(tf.constant(tables.chunk_start), tf.stack([previous, labels], axis=-1))
  ends = tf.gather_nd(tf.constant(tables.chunk_end), tf.stack([labels, following], axis=-1))
  return starts & inside, ends & inside, labels


def chunk_sums(tables: Tables, gold: tf.Tensor, predicted: tf.Tensor, lengths: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Gold, predicted and correct (identical type and bounds) chunks of a batch, as float32 sums.

  Args:
    tables: the label set's tables.
    gold, predicted: [B, T] label ids, each row's words first (trainer/decode.py `compact`).
    lengths: [B] words per row.

  A gold chunk is correct when, over its words, the predicted sequence starts and ends
  chunks exactly where the gold one does and has the same types: then the prediction has a
  chunk of the same type and bounds. Each gold chunk is a segment (its row and its index
  in the row); a segment with any mismatch is not correct.
  """
  gold_starts, gold_ends, gold = _boundaries(tables, gold, lengths)
  predicted_starts, predicted_ends, predicted = _boundaries(tables, predicted, lengths)
  types = tf.constant(tables.types)
  in_gold_chunk = tf.gather(tf.constant(tables.kinds), gold) != _O
  mismatch = in_gold_chunk & ((gold_starts != predicted_starts) | (gold_ends != predicted_ends)
                              | (tf.gather(types, gold) != tf.gather(types, predicted)))
  rows, width = tf.shape(gold)[0], tf.shape(gold)[1]
  chunk_index = tf.cumsum(tf.cast(gold_starts, tf.int32), axis=1)  # 1 on a row's first chunk
  segments = tf.range(rows)[:, None] * (width + 1) + chunk_index
  wrong = tf.math.unsorted_segment_sum(tf.cast(mismatch, tf.int32), segments, rows * (width + 1))
  gold_count = tf.reduce_sum(tf.cast(gold_starts, tf.float32))
  return {"chunks_gold": gold_count,
          "chunks_predicted": tf.reduce_sum(tf.cast(predicted_starts, tf.float32)),
          "chunks_correct": gold_count - tf.reduce_sum(tf.cast(wrong > 0, tf.float32))}


def canonical(tables: Tables, labels: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
  """Each row rewritten as the scheme's well-formed sequence with the same chunks.

  A CRF's loss needs a gold path its transitions allow: `O I-PER` (an I- with no B-) is
  the chunk conlleval reads, and IOB2 writes it `O B-PER`; an <unk> gold label becomes O.
  Rows are left-aligned; past a row's length the result is <pad>.

  >>> t = build_tables(["<pad>", "<unk>", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "iob2")
  >>> canonical(t, tf.constant([[2, 4, 4, 6, 1]]), tf.constant([5])).numpy().tolist()
  [[2, 3, 4, 5, 2]]
  """
  starts, ends, labels = _boundaries(tables, labels, lengths)
  types = tf.gather(tf.constant(tables.types), labels)
  in_chunk = tf.gather(tf.constant(tables.kinds), labels) != _O
  if tables.scheme == "iob2":
    kind = tf.where(starts, _B, _I)
  elif tables.scheme == "iob1":  # B- only where the chunk before ends right here with the same type
    previous_ends = tf.pad(ends[:, :-1], [[0, 0], [1, 0]])
    previous_types = tf.pad(types[:, :-1], [[0, 0], [1, 0]])
    kind = tf.where(starts & previous_ends & (previous_types == types), _B, _I)
  else:
    kind = tf.where(starts, tf.where(ends, _S, _B), tf.where(ends, _E, _I))
  kind = tf.where(in_chunk, kind, _O)
  encoded = tf.gather_nd(tf.constant(tables.encode), tf.stack([types, kind], axis=-1))
  inside = tf.range(tf.shape(labels)[1])[None, :] < tf.cast(lengths, tf.int32)[:, None]
  return tf.where(inside, encoded, contract.PAD_ID)


# --- which scheme ----------------------------------------------------------------------

def iob_evidence(labels: Sequence[str], label_rows: tf.RaggedTensor) -> tf.Tensor:
  """[2] int64 counts in a batch of gold rows: I- labels that start a chunk (at a row's start,
  after O, after another type), and B- labels that IOB1 would not write (not after the same
  type). <pad> (WordPiece continuation pieces) is no word and is skipped."""
  parts = [split_label(label) or (OUTSIDE, "") for label in labels]
  type_names = sorted({type_ for _, type_ in parts})
  kinds = tf.constant([KINDS.index(kind) for kind, _ in parts], tf.int32)
  types = tf.constant([type_names.index(type_) for _, type_ in parts], tf.int32)
  values, rows = label_rows.values, label_rows.value_rowids()
  words = values != contract.PAD_ID
  values, rows = tf.boolean_mask(values, words), tf.boolean_mask(rows, words)
  kind, type_ = tf.gather(kinds, values), tf.gather(types, values)
  same_row = tf.concat([[False], rows[1:] == rows[:-1]], axis=0)[:tf.size(rows)]
  previous_kind = tf.where(same_row, tf.concat([[_O], kind[:-1]], axis=0), _O)
  previous_type = tf.concat([[-1], type_[:-1]], axis=0)
  continues = same_row & ((previous_kind == _B) | (previous_kind == _I)) & (previous_type == type_)
  return tf.stack([tf.reduce_sum(tf.cast((kind == _I) & ~continues, tf.int64)),
                   tf.reduce_sum(tf.cast((kind == _B) & ~continues, tf.int64))])


def resolve(requested: str, labels: Sequence[str], train_paths: Sequence[str], compression: Optional[str]) -> str:
  """The scheme to use: `requested`, checked against labels.txt, or the detected one for "auto".

  auto: "none" unless labels.txt is a chunk tag set (`candidate`); "bioes" if it has E- or
  S- labels; else one pass over the train split's labels: "iob1" if more I- labels start
  a chunk than B- labels break IOB1's rule (B-X only after X), else "iob2". On a clean
  corpus that is "iob1" exactly when some I- starts a chunk; on a corpus with malformed
  sequences, the reading that fewer of them break.

  Raises:
    SchemeError: a requested chunk scheme does not fit labels.txt.
  """
  if requested != "auto":
    check_scheme(requested, labels)
    return requested
  found = candidate(labels)
  if found != "iob":
    return found
  from trainer import data  # pylint: disable=g-import-not-at-top  (tf.data; not needed to read tables)
  rows = tf.data.TFRecordDataset(list(train_paths), compression_type=compression, buffer_size=1 << 20)
  evidence = rows.batch(8192).map(lambda serialized: iob_evidence(labels, data.parse_ragged(
      serialized, "tag")[contract.LABELS]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
  i_starts, b_breaks = (int(n) for n in evidence.reduce(tf.zeros([2], tf.int64), lambda total, n: total + n))
  scheme = "iob1" if i_starts > b_breaks else "iob2"
  logging.info("Tag scheme %s: in the train split %d I- labels start a chunk and %d B- labels follow no chunk "
               "of their type", scheme, i_starts, b_breaks)
  if i_starts and b_breaks:
    logging.warning("The train labels mix IOB1 and IOB2 (%d I- start a chunk, %d B- follow no chunk of their "
                    "type): decoding as %s; entities are counted by conlleval's rules either way",
                    i_starts, b_breaks, scheme)
  return scheme
