"""The masked loss of a global batch is exact whatever the replicas and the padding."""

import numpy as np
import pytest
import tensorflow as tf

import contract
from trainer import data
from trainer.config import TrainerConfig
from trainer.loop import Trainer

TOKENS = [[5, 3, 9, 2, 8], [7, 7], [4, 6, 2], [3]]
LABELS = [[2, 3, 2, 4, 2], [5, 2], [3, 3, 2], [4]]


def global_batch(width, rows=range(4)):
  pad = lambda s: s + [0] * (width - len(s))
  matrix = lambda rows_: tf.constant(np.array(rows_, np.int64).reshape(-1, width))
  return {contract.TOKENS: matrix([pad(TOKENS[i]) for i in rows]),
          contract.LABELS: matrix([pad(LABELS[i]) for i in rows]),
          contract.LENGTH: tf.constant([len(TOKENS[i]) for i in rows], tf.int64),
          data.WEIGHT: tf.ones([len(rows)], tf.float32)}


def make_trainer(demo_tag_data, replicas, reduction, tmp_path):
  devices = [f"/cpu:{i}" for i in range(replicas)]
  strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  config = TrainerConfig(data_dir=demo_tag_data, model_dir=str(tmp_path / f"m{replicas}{reduction}"),
                         embedding_dim=8, hidden=8, bidirectional=True, loss_reduction=reduction,
                         char_features=0)  # the batches here are word-only
  trainer = Trainer(config, strategy, contract.read_metadata(demo_tag_data))
  rng = np.random.default_rng(0)
  trainer.model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in trainer.model.get_weights()])
  return trainer


@pytest.fixture
def trainers(demo_tag_data, tmp_path):
  """trainers(replicas, reduction): one Trainer of each kind, made when first asked for and
  kept for every batch given to it (nothing here changes its weights)."""
  made = {}

  def get(replicas, reduction):
    if (replicas, reduction) not in made:
      made[replicas, reduction] = make_trainer(demo_tag_data, replicas, reduction, tmp_path)
    return made[replicas, reduction]
  return get


def loss_and_gradients(trainer, replica_batches):
  """Runs one step's forward/backward with replica i given replica_batches[i]."""
  if not hasattr(trainer, "test_step"):
    trainer.test_step = _step_function(trainer)
  loss, gradients = trainer.test_step(replica_batches)
  return float(loss), [g.numpy() for g in gradients]


def _step_function(trainer):
  """One tf.function per trainer, traced once for batches of any shape: as from tf.data, the
  static shapes are unknown (and a static 0-row shape is never fed)."""
  strategy = trainer.strategy
  matrix, vector = tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64)
  spec = {contract.TOKENS: matrix, contract.LABELS: matrix, contract.LENGTH: vector,
          data.WEIGHT: tf.TensorSpec([None], tf.float32)}

  @tf.function(input_signature=[[spec] * strategy.num_replicas_in_sync])
  def step(replica_batches):
    batch = strategy.experimental_distribute_values_from_function(
        lambda context: replica_batches[context.replica_id_in_sync_group])

    def replica_fn(replica_batch):
      loss, _, _, gradients = trainer.replica_gradients(replica_batch, training=False)
      return loss, [tf.convert_to_tensor(g) for g in gradients]
    loss, gradients = strategy.run(replica_fn, args=(batch,))
    reduce = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
    return reduce(loss), [reduce(g) for g in gradients]

  return step


def test_loss_and_gradients_are_exact_with_1_and_2_replicas_any_padding_and_either_reduction(trainers):
  for reduction in ("token", "sequence"):
    one, two = trainers(1, reduction), trainers(2, reduction)
    reference_loss, reference_gradients = loss_and_gradients(one, [global_batch(5)])
    assert np.isfinite(reference_loss) and reference_loss > 0

    cases = {
        "wider padding": (one, [global_batch(12)]),
        "2 replicas": (two, [global_batch(5, [0, 1]), global_batch(5, [2, 3])]),
        "2 replicas, uneven split": (two, [global_batch(5, [0]), global_batch(7, [1, 2, 3])]),
        "2 replicas, one given only filler": (
            two, [global_batch(5), {**global_batch(5, [0]), data.WEIGHT: tf.zeros([1])}]),
        "2 replicas, one empty": (two, [global_batch(5), global_batch(5, [])]),
    }
    for name, (trainer, batches) in cases.items():
      loss, gradients = loss_and_gradients(trainer, batches)
      assert loss == pytest.approx(reference_loss, rel=1e-5, abs=1e-6), (reduction, name)
      for got, want in zip(gradients, reference_gradients):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=f"{reduction}: {name}")

  # token: the mean over every real token; sequence: the mean of each sequence's mean.
  token, sequence = trainers(1, "token"), trainers(1, "sequence")
  losses = [loss_and_gradients(token, [global_batch(5, [i])])[0] for i in range(4)]
  assert loss_and_gradients(sequence, [global_batch(5)])[0] == pytest.approx(np.mean(losses), rel=1e-5)
  lengths = [len(t) for t in TOKENS]
  assert loss_and_gradients(token, [global_batch(5)])[0] == pytest.approx(
      np.dot(losses, lengths) / sum(lengths), rel=1e-5)


def test_json_files_other_workers_read_are_never_seen_half_written(tmp_path):
  # MODEL_DIR/model.json is written by the chief while the other workers may read it.
  import json  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  from trainer.model_dir import write_json  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "model.json")
  big = {f"key{i}": list(range(100)) for i in range(100)}
  done = threading.Event()
  seen, errors = [], []

  def read_while_written():
    while not done.is_set():
      try:
        with open(path) as f:
          seen.append(len(json.load(f)))
      except FileNotFoundError:
        pass
      except ValueError as error:
        errors.append(error)

  reader = threading.Thread(target=read_while_written)
  reader.start()
  for _ in range(50):
    write_json(path, big)
  done.set()
  reader.join()
  assert not errors and seen and set(seen) == {100}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]
