"""A raw file's bytes → a binary stream of UTF-8 lines: decompression, `--encoding`, BOM.

Every reader of raw corpora opens files through `open_for_lines`, so a file gives the same
bytes, and so the same lines and records, to the pipeline and to trainer.evaluate and
trainer.predict. The caller opens the file itself (Beam's FileSystems in the pipeline,
`tf.io.gfile` in the trainer) and hands over the raw stream:

- compressed files are decompressed by their suffix, as Beam's `CompressionTypes` names
  them (.gz, .bz2, .zst/.zstd, .xz/.lzma, .deflate), several concatenated streams too;
- a file in another `--encoding` is transcoded to UTF-8 (incrementally: bounded memory);
  bytes that do not decode become lone surrogates, which no UTF-8 line can hold, so the
  record holding them becomes an `undecodable` dead letter rather than being altered;
- a UTF-8 byte-order mark at the start is skipped (`skip_bom`).

    >>> f = open_for_lines(io.BytesIO(gzip.compress(b"a\\nb")), "x.gz")
    >>> skip_bom(f), f.read()
    (0, b'a\\nb')
"""

import bz2
import codecs
import gzip  # pylint: disable=unused-import  (the doctest above)
import io
import lzma
import zlib

UTF8 = "utf-8"
UTF8_BOM = codecs.BOM_UTF8
_READ_BYTES = 1 << 20

# Suffix → a function making a decompressor object (decompress(data), unused_data, eof).
_DECOMPRESSORS = {
    ".bz2": bz2.BZ2Decompressor,
    ".deflate": zlib.decompressobj,
    ".gz": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    ".xz": lzma.LZMADecompressor,
    ".lzma": lzma.LZMADecompressor,
}


def _zstd_decompressor():
  import zstandard  # pylint: disable=g-import-not-at-top  (installed with apache-beam)
  return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()


_DECOMPRESSORS[".zst"] = _DECOMPRESSORS[".zstd"] = _zstd_decompressor


def compression_suffix(path: str) -> str:
  """The compression suffix of `path` (".gz", ...), or "" for an uncompressed file."""
  lowered = path.lower()
  return next((suffix for suffix in _DECOMPRESSORS if lowered.endswith(suffix)), "")


def is_compressed(path: str) -> bool:
  return bool(compression_suffix(path))


def is_utf8(encoding: str) -> bool:
  """Whether `encoding` names plain UTF-8 (read as it is, on the fast path).

  Raises:
    LookupError: Python knows no such encoding.
  """
  return codecs.lookup(encoding).name == UTF8


class _RawStream(io.RawIOBase):
  """Adapts a stream with only read(n) (a decompressor, a transcoder) to io.BufferedReader."""

  def __init__(self, stream):
    super().__init__()
    self._stream = stream

  def readable(self):
    return True

  def readinto(self, buffer):
    data = self._stream.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)

  def close(self):
    self._stream.close()
    super().close()


class _Decompressed:
  """read(n) of a compressed stream's content; a stream of several concatenated compressed
  streams (as `cat a.gz b.gz` makes) reads as their contents one after the other."""

  def __init__(self, stream, make_decompressor):
    self._stream, self._make = stream, make_decompressor
    self._decompressor = make_decompressor()
    self._pending = b""

  def read(self, size: int) -> bytes:
    while len(self._pending) < size:
      data = self._stream.read(_READ_BYTES)
      if not data:
        break
      while data:
        self._pending += self._decompressor.decompress(data)
        data = self._decompressor.unused_data if self._decompressor.eof else b""
        if self._decompressor.eof:  # the next stream, if any, starts in what is left
          self._decompressor = self._make()
    data, self._pending = self._pending[:size], self._pending[size:]
    return data

  def close(self):
    self._stream.close()


def _escape_undecodable(error: UnicodeDecodeError):
  """Decodes each byte that does not decode as a lone surrogate (see the module docstring)."""
  return "".join(chr(0xDC00 + byte) for byte in error.object[error.start:error.end]), error.end


codecs.register_error("corpus_undecodable", _escape_undecodable)


class _Transcoder:
  """read(n) of a file in another encoding, as UTF-8 (an incremental decoder: bounded memory)."""

  def __init__(self, stream, encoding: str):
    self._stream = stream
    self._decoder = codecs.getincrementaldecoder(encoding)(errors="corpus_undecodable")
    self._pending = b""

  def read(self, size: int) -> bytes:
    while len(self._pending) < size:
      raw = self._stream.read(_READ_BYTES)
      text = self._decoder.decode(raw, final=not raw)
      self._pending += text.encode(UTF8, errors="surrogatepass")
      if not raw:
        break
    data, self._pending = self._pending[:size], self._pending[size:]
    return data

  def close(self):
    self._stream.close()


def open_for_lines(raw, path: str, encoding: str = UTF8):
  """The raw binary stream of the file `path` → a binary stream of its UTF-8 content whose
  readline(size) works, for `corpus.lines.read_lines`.

  An uncompressed UTF-8 file is `raw` itself (seekable where `raw` is, so it can be read
  in byte ranges); any other is read from its start. The caller moves past a byte-order
  mark with `skip_bom` (or to its range).
  """
  suffix = compression_suffix(path)
  stream = raw
  if not isinstance(raw, io.IOBase):  # e.g. tf.io.gfile.GFile: its readline takes no size
    stream = raw = io.BufferedReader(_RawStream(raw), _READ_BYTES)
  if suffix:
    stream = io.BufferedReader(_RawStream(_Decompressed(raw, _DECOMPRESSORS[suffix])), _READ_BYTES)
  if not is_utf8(encoding):
    stream = io.BufferedReader(_RawStream(_Transcoder(stream, encoding)), _READ_BYTES)
  return stream


def skip_bom(f) -> int:
  """Reads past a UTF-8 byte-order mark at the current position (a file's start); returns
  the bytes skipped, 0 or 3. Works on streams that cannot seek back (compressed)."""
  if hasattr(f, "peek"):
    if f.peek(len(UTF8_BOM))[:len(UTF8_BOM)] != UTF8_BOM:
      return 0
    f.read(len(UTF8_BOM))
    return len(UTF8_BOM)
  if f.read(len(UTF8_BOM)) == UTF8_BOM:
    return len(UTF8_BOM)
  f.seek(0)
  return 0
