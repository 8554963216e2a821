"""The learning-rate schedule: linear warm-up, then linear, cosine or no decay.

A `keras.optimizers.schedules.LearningRateSchedule` of the optimizer's own step counter
(`optimizer.iterations`, which the checkpoint holds), so a resumed run continues the
schedule where it stopped. For example with peak 1e-3, 100 warm-up steps and linear decay
over 1000 steps: step 0 → 1e-5, step 99 → 1e-3, step 550 → 5e-4, step 999 → 1.1e-6.
"""

import math

import keras
import tensorflow as tf

DECAYS = ("linear", "cosine", "none")


@keras.saving.register_keras_serializable(package="trainer")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """peak * min(1, (step + 1) / warmup_steps) * decay(progress after the warm-up)."""

  def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str):
    if decay not in DECAYS:
      raise ValueError(f"decay must be one of {DECAYS}, not {decay!r}")
    self.peak = peak
    self.warmup_steps = warmup_steps
    self.total_steps = total_steps
    self.decay = decay

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = tf.minimum(1.0, (step + 1.0) / float(max(self.warmup_steps, 1)))
    decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
    # 0 at the end of warm-up, 1 at total_steps: the last step trained still learns a little.
    progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
    if self.decay == "linear":
      factor = 1.0 - progress
    elif self.decay == "cosine":
      factor = 0.5 * (1.0 + tf.cos(math.pi * progress))
    else:
      factor = tf.constant(1.0)
    return self.peak * warmup * factor

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
            "decay": self.decay}
