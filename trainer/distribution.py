"""Which tf.distribute strategy runs the trainer, and how many replicas it has.

- TF_CONFIG set: MultiWorkerMirroredStrategy (one process per machine).
- GPUs visible: MirroredStrategy over all of them.
- Otherwise: MirroredStrategy over `cpu_replicas` logical CPU devices, so that N replicas
  really run (and really all-reduce) on a machine without GPUs.
"""

import json
import logging
import os

import tensorflow as tf


def split_cpu(cpu_replicas: int) -> None:
  """Splits the CPU into logical devices; must run before TensorFlow initialises devices."""
  cpus = tf.config.list_physical_devices("CPU")
  if cpu_replicas > 1 and not tf.config.list_physical_devices("GPU") and not os.environ.get("TF_CONFIG"):
    if len(tf.config.get_logical_device_configuration(cpus[0]) or ()) >= cpu_replicas:
      return  # split already (by the program that runs the trainer in its own process): use the first N
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)])


def make_strategy(cpu_replicas: int) -> tf.distribute.Strategy:
  if os.environ.get("TF_CONFIG"):  # before anything initialises the TF context
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    logging.info("TF_CONFIG: MultiWorkerMirroredStrategy over %s", cluster)
    # One replica per worker on CPU (each worker's GPUs otherwise); gRPC ring all-reduce.
    communication = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)
  split_cpu(cpu_replicas)
  if tf.config.list_logical_devices("GPU"):
    return tf.distribute.MirroredStrategy()
  devices = [d.name for d in tf.config.list_logical_devices("CPU")][:max(1, cpu_replicas)]
  return tf.distribute.MirroredStrategy(
      devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def worker_role() -> tuple:
  """(is_chief, name) of this process: the chief writes MODEL_DIR's shared outputs.

  Without TF_CONFIG the only process is the chief. With it, the chief is task `chief`,
  or worker 0 when the cluster has no chief.
  """
  if not os.environ.get("TF_CONFIG"):
    return True, "chief"
  config = json.loads(os.environ["TF_CONFIG"])
  task = config.get("task", {})
  task_type, index = task.get("type", "worker"), int(task.get("index", 0))
  has_chief = bool(config.get("cluster", {}).get("chief"))
  is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)
  return is_chief, f"{task_type}-{index}"
