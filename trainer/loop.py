"""The distributed training loop: strategy scope, per-replica steps, checkpoints, logs.

Distribution is visible here and nowhere else: the model and optimizer are built in
`strategy.scope()`, input comes from `distribute_datasets_from_function`, and each
replica's loss is its sum divided by the *global* count (all-reduced), so gradients
summed over replicas are those of the global batch.
"""

import logging
import os
import signal
import time
from typing import Dict, Union

import keras
import tensorflow as tf

import contract
from trainer import config as config_lib
from trainer import crf
from trainer import data
from trainer import entities
from trainer import loss as loss_lib
from trainer import metrics as metrics_lib
from trainer import model_dir
from trainer import ops
from trainer.config import TrainerConfig
from trainer.model import build_model, model_inputs
from trainer.schedule import WarmupDecay


class Trainer:
  """Owns the strategy, model, optimizer, datasets and checkpoints of one run."""

  def __init__(self, config: TrainerConfig, strategy: tf.distribute.Strategy,
               metadata: Union[dict, contract.Metadata], is_chief: bool = True, worker_name: str = "chief",
               new_data: bool = False):
    self.config = config
    # Data this MODEL_DIR's checkpoints were not trained on (another OUTPUT_DIR of the same
    # vocabulary, pipeline.preprocess --vocab_from): a resumed run reads it from its start
    # rather than skipping the batches the checkpoint's steps took from the old data.
    self.new_data = new_data
    self.is_chief = is_chief
    # Every worker saves (saving may involve collectives), but only the chief into
    # MODEL_DIR's shared directories; the others into MODEL_DIR/workers/NAME.
    self.output_dir = config.model_dir if is_chief else os.path.join(config.model_dir, "workers", worker_name)
    self.strategy = strategy
    self.metadata = contract.Metadata.of(metadata)
    self.task = self.metadata.task
    self.eos_id = self.metadata.eos_id  # lm: the end-of-sequence target (None: an older output, none)
    self.replicas = strategy.num_replicas_in_sync
    self.compression = self.metadata.compression
    self.train_paths = contract.shard_paths(config.data_dir, self.metadata.raw, "train")
    self.eval_paths = contract.shard_paths(config.data_dir, self.metadata.raw, "eval")
    self.native_parser = ops.available()  # decided once: the same parser for every dataset of the run
    # Without eval examples (pipeline --eval_fraction 0, or a corpus too small for one) there is
    # nothing to evaluate: a split of zeros would score a perfect loss, and the first
    # evaluation would stay "best" and be exported. Such a run trains and exports its last step.
    self.evaluates = self.metadata.examples("eval") > 0
    self._eval_datasets = {}  # split → its distributed eval dataset
    self._stop_requested = False
    self._dense_gradients = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    self.char_vocab_size = config.char_vocab_size(self.metadata)  # None: a word-only model (or data)
    with strategy.scope():
      self.model = build_model(config, self.task, self.metadata.vocab_size, self.metadata.num_classes,
                               self.char_vocab_size, model_dir.token_counts(config, self.metadata))
      self.learning_rate = WarmupDecay(config.learning_rate, config.warmup_steps, config.train_steps, config.decay)
      self.optimizer = keras.optimizers.Adam(self.learning_rate)
      self.optimizer.build(self.model.trainable_variables)
    self.decoder = self._tag_decoder()  # tag: loss, decoded tags and entity counts; else None
    # Every model variable by its Keras path, including the dropout RNG states, which
    # tf.train.Checkpoint does not find through a Keras 3 model: without them a resumed
    # run draws different dropout masks than an uninterrupted one.
    model_variables = {variable.path: variable.value for variable in self.model.variables}
    self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, variables=model_variables)
    self.chief_checkpoints = os.path.join(config.model_dir, config_lib.CHECKPOINTS_DIR)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(self.output_dir, config_lib.CHECKPOINTS_DIR), max_to_keep=3)
    self.best = model_dir.BestCheckpoint(os.path.join(self.output_dir, config_lib.BEST_DIR), self.checkpoint, self.task)
    self.writer = (tf.summary.create_file_writer(os.path.join(config.model_dir, config_lib.LOGS_DIR)) if is_chief
                   else tf.summary.create_noop_writer())
    self.stopped_early = False  # by SIGTERM: the run is not finished
    self.early_stopped = False  # by --early_stopping: the run is finished

  def _tag_decoder(self):
    if self.task != "tag":
      return None
    labels = contract.read_vocab(self.metadata.labels_path(self.config.data_dir))
    # trainer.task passes the scheme it recorded in model.json; "auto" is resolved here.
    scheme = entities.resolve(self.config.tag_scheme, labels, self.train_paths, self.compression)
    return crf.tag_decoder(labels, scheme, self.model)

  @property
  def chunks(self) -> bool:
    """Whether the eval metrics count entities (a chunk tag scheme)."""
    return self.decoder is not None and self.decoder.tables.entities

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  @property
  def parser_name(self) -> str:
    return "native" if self.native_parser else "tf.io.parse_sequence_example"

  # --- input ---------------------------------------------------------------------------

  def _dataset_fn(self, training: bool, skip_batches: int = 0, paths=None):
    paths = paths or (self.train_paths if training else self.eval_paths)

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
      num_pipelines = input_context.num_input_pipelines if training else 1
      local_replicas = self.replicas // input_context.num_input_pipelines
      spec = data.bucket_spec(self.metadata.raw, self.config.num_buckets,
                              self.config.tokens_per_batch // input_context.num_input_pipelines, local_replicas,
                              self.config.pad_multiple)
      return data.make_dataset(
          paths, self.task, spec, local_replicas, training=training, compression=self.compression,
          seed=self.config.seed, pipeline_index=input_context.input_pipeline_id, num_pipelines=num_pipelines,
          shuffle_buffer=self.config.shuffle_buffer, skip_batches=skip_batches, native=self.native_parser,
          chars=self.char_vocab_size is not None)
    return dataset_fn

  def distributed_dataset(self, training: bool, skip_batches: int = 0, paths=None):
    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return self.strategy.distribute_datasets_from_function(
        self._dataset_fn(training, skip_batches, paths), options)

  # --- steps ---------------------------------------------------------------------------

  def _replica_sums(self, batch, training: bool):
    logits = self.model(model_inputs(self.model, batch, self.task, self.eos_id), training=training)
    target = loss_lib.targets(batch, self.task, self.eos_id)
    mask = loss_lib.target_mask(batch, target)
    loss_sums = self.decoder.loss_sums if self.decoder is not None else loss_lib.loss_sums
    loss_sum, count = loss_sums(logits, target, mask, self.config.loss_reduction)
    return logits, target, mask, loss_sum, count

  def replica_gradients(self, batch, training: bool = True):
    """This replica's share of the global batch's loss, and its gradients.

    Summed over replicas, both equal the loss and gradients of the whole global batch.
    Returns (loss, loss_sum, count, gradients).
    """
    context = tf.distribute.get_replica_context()
    with tf.GradientTape() as tape:
      _, _, _, loss_sum, count = self._replica_sums(batch, training=training)
      global_count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
      loss = loss_sum / tf.maximum(global_count, 1.0)
    return loss, loss_sum, count, tape.gradient(loss, self.model.trainable_variables)

  def _train_replica_step(self, batch):
    context = tf.distribute.get_replica_context()
    _, loss_sum, count, gradients = self.replica_gradients(batch)
    variables = self.model.trainable_variables
    if self._dense_gradients:
      # Across workers, sparse embedding gradients have a different number of rows on
      # each worker, and the collective gather needs equal shapes: all-reduce them dense.
      gradients = [tf.convert_to_tensor(g) for g in gradients]
    if self.config.clip_norm > 0:
      # Clip the global batch's gradient, not each replica's: all-reduce first, then
      # hand each replica 1/N of the clipped sum (the optimizer sums them again).
      gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
      gradients, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm)
      gradients = [_scale(g, 1.0 / self.replicas) for g in gradients]
    self.optimizer.apply_gradients(zip(gradients, variables))
    lengths = tf.cast(batch[contract.LENGTH], tf.float32) * batch[data.WEIGHT]
    slots = tf.cast(tf.size(batch[contract.TOKENS]), tf.float32)
    return {"loss_sum": loss_sum, "count": count, "tokens": tf.reduce_sum(lengths), "slots": slots}

  def _eval_replica_step(self, batch):
    logits = self.model(model_inputs(self.model, batch, self.task, self.eos_id), training=False)
    return metrics_lib.eval_sums(logits, batch, self.task, self.config.loss_reduction, self.eos_id, self.decoder)

  def _reduce(self, per_replica: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

  @tf.function
  def run_steps(self, iterator, num_steps: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`num_steps` training steps on batches from `iterator` (a distributed iterator); their
    summed loss, target count, real tokens and padded slots."""
    totals = {k: tf.constant(0.0) for k in ("loss_sum", "count", "tokens", "slots")}
    for _ in tf.range(num_steps):
      sums = self._reduce(self.strategy.run(self._train_replica_step, args=(next(iterator),)))
      totals = {k: totals[k] + sums[k] for k in totals}
    return totals

  @tf.function(reduce_retracing=True)  # one trace for all bucket shapes, not one per bucket
  def _eval_step(self, batch):
    return self._reduce(self.strategy.run(self._eval_replica_step, args=(batch,)))

  # --- the loop ------------------------------------------------------------------------

  def evaluate(self, split: str = "eval") -> Dict[str, float]:
    """metrics.json's eval metrics of the current weights on a split of DATA_DIR."""
    totals = dict.fromkeys(metrics_lib.SUM_KEYS, 0.0)
    if split not in self._eval_datasets:  # built (and its functions traced) once, iterated at each evaluation
      paths = self.eval_paths if split == "eval" else self.train_paths
      self._eval_datasets[split] = self.distributed_dataset(training=False, paths=paths)
    for batch in self._eval_datasets[split]:
      for k, v in self._eval_step(batch).items():
        totals[k] += float(v)
    return metrics_lib.eval_metrics(totals, self.task, self.metadata.characters(split), self.chunks)

  def request_stop(self, *_):
    """On SIGTERM (preemption): finish the current steps, checkpoint, exit."""
    logging.warning("SIGTERM: checkpointing at the next step boundary and stopping")
    self._stop_requested = True

  def train(self) -> dict:
    """Trains to `train_steps` (or SIGTERM, or early stopping); SIGTERM means `request_stop`
    while it runs, and whatever it meant before afterwards."""
    previous = None
    try:
      previous = signal.signal(signal.SIGTERM, self.request_stop)
    except ValueError:  # not the main thread: a caller's thread cannot take signals
      pass
    try:
      return self._train()
    except tf.errors.DataLossError as error:
      where = contract.find_corrupt_record(self.train_paths + self.eval_paths, self.compression)
      raise contract.DataDirError(
          f"corrupt TFRecord data ({where or error.message}); rerun pipeline.preprocess --overwrite") from None
    finally:
      if previous is not None:
        signal.signal(signal.SIGTERM, previous)

  def _out_of_patience(self) -> bool:
    patience = self.config.early_stopping
    return patience > 0 and self.best.evals_without_improvement >= patience

  def _train(self) -> dict:
    config = self.config
    restored = tf.train.latest_checkpoint(self.chief_checkpoints)  # every worker resumes from the chief's
    if restored:
      self.checkpoint.restore(restored).assert_existing_objects_matched()
    start = self.step
    if restored:
      logging.info("Resumed from %s at step %d%s", restored, start,
                   f", continuing on new data ({config.data_dir}) from its start" if self.new_data else "")
    self.best.load()
    if self.new_data and restored:
      self.best.start_over()
    if not self.evaluates:
      logging.warning("%s has no eval examples (pipeline.preprocess --eval_fraction 0, or too few records): "
                      "training without evaluation; the export is the last step", config.data_dir)
    iterator = iter(self.distributed_dataset(training=True, skip_batches=0 if self.new_data else start))
    metrics = {"global_step": start, "replicas": self.replicas, "parser": self.parser_name}
    run_seconds, run_tokens, run_slots = 0.0, 0.0, 0.0  # training steps only, not eval
    self.early_stopped = self._out_of_patience()
    while self.step < config.train_steps and not self._stop_requested and not self.early_stopped:
      interval = min(config.log_every, config.train_steps - self.step,
                     _steps_to_next(self.step, config.eval_every), _steps_to_next(self.step, config.checkpoint_every))
      begin = time.time()
      sums = {k: float(v) for k, v in self.run_steps(iterator, tf.constant(interval)).items()}
      seconds = time.time() - begin
      step = self.step
      run_seconds += seconds
      run_tokens += sums["tokens"]
      run_slots += sums["slots"]
      train_loss = sums["loss_sum"] / max(sums["count"], 1.0)
      tokens_per_s = run_tokens / max(run_seconds, 1e-9)
      metrics.update(global_step=step, train_loss=train_loss, tokens_per_s=tokens_per_s,
                     padding_waste=1.0 - run_tokens / max(run_slots, 1.0))
      eta = (config.train_steps - step) * seconds / interval
      learning_rate = float(self.learning_rate(step - 1))  # the rate of the last step trained
      logging.info("step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s  padding %.1f%%  ETA %s", step, config.train_steps,
                   train_loss, learning_rate, sums["tokens"] / max(seconds, 1e-9), 100 * metrics["padding_waste"],
                   _format_seconds(eta))
      with self.writer.as_default(step=step):
        tf.summary.scalar("train/loss", train_loss)
        tf.summary.scalar("train/learning_rate", learning_rate)
        tf.summary.scalar("train/tokens_per_s", sums["tokens"] / max(seconds, 1e-9))
        tf.summary.scalar("train/padding_waste", 1.0 - sums["tokens"] / max(sums["slots"], 1.0))
      # Evaluate before checkpointing: a run killed in between re-evaluates the same
      # weights when it resumes, and BestCheckpoint does not count that evaluation twice.
      if self.evaluates and (step % config.eval_every == 0 or step == config.train_steps):
        metrics.update(self._evaluate_and_log(step))
        self.early_stopped = self._out_of_patience()
        if self.early_stopped:
          logging.info("Early stopping at step %d: %d evaluations without improvement on step %d", step,
                       self.best.evals_without_improvement, self.best.step)
      if step % config.checkpoint_every == 0 or step == config.train_steps or self._stop_requested:
        self._save(step)
    self._save(self.step)
    metrics["global_step"] = self.step
    if self._stop_requested and self.step < config.train_steps and not self.early_stopped:
      self.stopped_early = True
      self.writer.flush()
      return metrics
    if self.evaluates and "eval_loss" not in metrics:
      metrics.update(self._evaluate_and_log(self.step))
    metrics.update(self._exported_metrics(metrics))
    self.writer.flush()
    return metrics

  def _exported_metrics(self, metrics: dict) -> dict:
    """`best_step` and `best`: the step that is exported and its eval metrics (none without eval)."""
    if self.config.export == "best" and self.best.step is not None:
      return {"best_step": self.best.step, "best": self.best.metrics}
    return {"best_step": self.step, "best": {k: v for k, v in metrics.items() if k.startswith("eval_")}}

  def restore_exported(self) -> int:
    """Puts the weights of the step to export into the model; returns that step."""
    if self.config.export == "best" and self.best.step is not None and self.best.step != self.step:
      self.best.restore_model(self.model)
      return self.best.step
    return self.step

  def _save(self, step: int) -> None:
    latest = self.manager.latest_checkpoint
    if latest is None or not latest.endswith(f"-{step}"):
      self.manager.save(checkpoint_number=step)

  def _evaluate_and_log(self, step: int) -> dict:
    results = self.evaluate()
    improved = self.best.update(step, results)
    with self.writer.as_default(step=step):
      for name, value in results.items():
        if name not in ("eval_examples", "eval_tokens"):
          tf.summary.scalar(name.replace("eval_", "eval/"), value)
    described = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items())
    logging.info("step %d  %s%s", step, described,
                 "  (best so far)" if improved else f"  (best: step {self.best.step})")
    return results


def _scale(gradient, factor: float):
  if isinstance(gradient, tf.IndexedSlices):  # embedding gradients stay sparse
    return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
  return gradient * factor


def _steps_to_next(step: int, every: int) -> int:
  return every - step % every if every > 0 else 1 << 30


def _format_seconds(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
