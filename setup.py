"""Installable package, so Dataflow/Flink workers get the code with --setup_file ./setup.py."""

import setuptools

setuptools.setup(
    name="rnn-sequence-pipeline",
    version="0.1.0",
    description="Beam + TFT pipeline to sharded SequenceExamples, and a tf.distribute RNN trainer",
    py_modules=["contract", "quiet"],
    packages=["corpus", "pipeline", "trainer", "trainer.ops"],
    # trainer/ops is built on first use (trainer/ops/__init__.py); the scripts start PROCESS workers.
    package_data={"trainer.ops": ["*.cc"], "pipeline": ["*.sh"]},
    python_requires=">=3.10",
    # Workers install what the pipeline needs; the trainer's stack is in requirements.txt.
    install_requires=["apache-beam[gcp]==2.77.0", "tensorflow-transform==1.21.0", "tfx-bsl==1.21.0",
                      "tensorflow-text==2.21.1"],
)
