"""Eval metrics from logits: one definition for trainer.task's evals and trainer.evaluate.

Batches are reduced to sums (`eval_sums`, per replica or per batch), the sums are added up
over a split, and `eval_metrics` turns the totals into metrics.json's eval keys. Sums add
up whatever the batching, so trainer.evaluate reproduces a training run's eval metrics.
"""

import math
from typing import Dict, Mapping, Optional

import tensorflow as tf

import contract
from trainer import entities
from trainer import loss as loss_lib

SUM_KEYS = ("loss_sum", "count", "nll_sum", "correct", "targets", "examples", "tokens") + entities.SUM_KEYS


def eval_sums(logits: tf.Tensor, batch: Mapping[str, tf.Tensor], task: str, reduction: str,
              eos_id: Optional[int] = None, decoder=None) -> Dict[str, tf.Tensor]:
  """The sums of one batch (rows with weight 0 count for nothing); `logits` of
  `model.model_inputs(model, batch, task, eos_id)`.

  `loss_sum / count` is the training loss (its reduction); `nll_sum` is the summed log-loss
  in nats over every target whatever the reduction (for bits per character). `decoder`
  (tag: trainer/crf.py `TagDecoder`) gives the loss, the decoded tags that `correct`
  counts, and the chunk sums (entities.SUM_KEYS, zeros without a chunk scheme).
  """
  target = loss_lib.targets(batch, task, eos_id)
  mask = loss_lib.target_mask(batch, target)
  loss_sums = decoder.loss_sums if decoder is not None else loss_lib.loss_sums
  loss_sum, count = loss_sums(logits, target, mask, reduction)
  nll_sum, targets = loss_sums(logits, target, mask, "token") if reduction != "token" else (loss_sum, count)
  weight = batch[loss_lib.WEIGHT]
  sums = {"loss_sum": loss_sum, "count": count, "nll_sum": nll_sum, "targets": targets,
          "examples": tf.reduce_sum(weight),
          "tokens": tf.reduce_sum(tf.cast(batch[contract.LENGTH], tf.float32) * weight)}
  if decoder is not None:
    sums.update(decoder.eval_sums(logits, target, mask))
  else:
    sums.update({key: tf.constant(0.0) for key in entities.SUM_KEYS},
                correct=loss_lib.correct_count(logits, target, mask))
  return sums


def eval_metrics(totals: Mapping[str, float], task: str, characters: Optional[int] = None,
                 chunks: bool = False) -> Dict[str, float]:
  """Totals of `eval_sums` over a split → metrics.json's eval keys; `chunks` (a chunk tag
  scheme): also entity precision, recall and F1 (0 where nothing is predicted or gold).

  >>> eval_metrics({"loss_sum": 6.0, "count": 3.0, "nll_sum": 6.0, "correct": 0.0, "targets": 3.0,
  ...               "examples": 1.0, "tokens": 4.0}, "lm", characters=10)["eval_bits_per_char"]
  0.8656170245333781
  """
  loss = totals["loss_sum"] / max(totals["count"], 1.0)
  metrics = {"eval_loss": loss, "eval_examples": int(totals["examples"]), "eval_tokens": int(totals["tokens"])}
  if task == "lm":
    metrics["eval_perplexity"] = math.exp(min(loss, 50.0))
    if characters:
      metrics["eval_bits_per_char"] = totals["nll_sum"] / math.log(2.0) / characters
  else:
    metrics["eval_accuracy"] = totals["correct"] / max(totals["targets"], 1.0)
  if chunks:
    correct, gold, predicted = (totals.get(key, 0.0) for key in entities.SUM_KEYS)
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    metrics.update(eval_precision=precision, eval_recall=recall,
                   eval_f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0)
  return metrics


def better(candidate: Mapping[str, float], best: Optional[Mapping[str, float]], task: str) -> bool:
  """Whether eval metrics improve on the best so far: entity F1 (a chunk tag scheme), else
  accuracy (tag, classify), a tie going to the lower loss; loss (lm)."""
  if best is None:
    return True
  if task == "lm":
    return candidate["eval_loss"] < best["eval_loss"]
  key = "eval_f1" if "eval_f1" in candidate and "eval_f1" in best else "eval_accuracy"
  if candidate[key] != best[key]:
    return candidate[key] > best[key]
  return candidate["eval_loss"] < best["eval_loss"]
