# The two commands a new user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The reference tools that tests compare against (seqeval, nltk, sklearn-crfsuite): a venv of
# their own, so they never meet the project's pinned requirements; run in subprocesses.
PEERS := .venv-peers
DEMO_OUT ?= demo_out
# Beam's Prism runner and the Python SDK's boot program (Go), built at the Beam version that
# requirements.txt pins, into one folder that pipeline/prism.py reads.
BEAM_VERSION := $(shell sed -n 's/^apache-beam\(\[[a-z,]*\]\)\{0,1\}==\([0-9.]*\).*/\2/p' requirements.txt)
BEAM_BIN := build/beam
GO ?= go

.PHONY: setup beam-binaries demo test bench prism-up prism-down clean

setup: $(VENV)/.installed $(PEERS)/.installed beam-binaries

beam-binaries: $(BEAM_BIN)/.built-$(BEAM_VERSION)

# Rebuilt only when the Beam version changes (the stamp names it). Go downloads the Beam
# module once, here; nothing is downloaded when a job runs.
$(BEAM_BIN)/.built-$(BEAM_VERSION):
	@command -v $(GO) >/dev/null || { echo "$(GO) not found: make setup builds Beam's Prism runner and boot program with Go 1.26 or later (https://go.dev/doc/install)"; exit 2; }
	@test -n "$(BEAM_VERSION)" || { echo "no apache-beam==VERSION line in requirements.txt"; exit 2; }
	rm -rf $(BEAM_BIN)/gobin && mkdir -p $(BEAM_BIN)/gobin
	GOBIN=$(abspath $(BEAM_BIN))/gobin $(GO) install github.com/apache/beam/sdks/v2/go/cmd/prism@v$(BEAM_VERSION) \
	    github.com/apache/beam/sdks/v2/python/container@v$(BEAM_VERSION)
	mv $(BEAM_BIN)/gobin/prism $(BEAM_BIN)/prism
	mv $(BEAM_BIN)/gobin/container $(BEAM_BIN)/boot
	rmdir $(BEAM_BIN)/gobin
	echo $(BEAM_VERSION) > $(BEAM_BIN)/VERSION
	rm -f $(BEAM_BIN)/.built-*
	touch $@

$(VENV)/.installed: requirements.txt setup.py
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@# The native record parser (trainer/ops): optional, so a failed build only warns.
	$(PY) -m trainer.ops || echo "warning: the trainer will parse records with tf.io.parse_sequence_example"
	touch $@

# Built anew (not updated) when benchmarks/peers.txt changes, so it holds exactly that file.
$(PEERS)/.installed: benchmarks/peers.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; run 'make PYTHON=python3 ...'"; exit 2; }
	rm -rf $(PEERS)
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -r benchmarks/peers.txt
	touch $@

demo: setup
	$(PY) -m pipeline.preprocess --input data/demo/tagged.conll --output_dir $(DEMO_OUT)/data \
	    --format conll --task tag --overwrite
	$(PY) -m trainer.task --data_dir $(DEMO_OUT)/data --model_dir $(DEMO_OUT)/model \
	    --cpu_replicas 2 --train_steps 150 --eval_every 50 --log_every 25 \
	    --checkpoint_every 50
	@echo
	@echo "Data (shards, vocab.txt, labels.txt, metadata.json): $(DEMO_OUT)/data"
	@echo "Dead letters:                                       $(DEMO_OUT)/data/errors"
	@echo "Model checkpoints:                                  $(DEMO_OUT)/model/checkpoints"
	@echo "Servable model (raw text in):                       $(DEMO_OUT)/model/export"
	@echo "Metrics:                                            $(DEMO_OUT)/model/metrics.json"
	@echo "TensorBoard:  $(VENV)/bin/tensorboard --logdir $(DEMO_OUT)/model/logs"

# The whole suite (CI runs this): there is no faster subset to forget to run. One pytest-xdist
# worker per core, each handed one test at a time when it is free, the long ones first
# (tests/conftest.py). A worker more than cores was no faster and cost more CPU time (README).
test: setup
	$(PY) -m pytest -q -n $$($(PY) -c 'import os; print(os.cpu_count() or 1)') --maxschedchunk 1 tests

bench: setup
	$(PY) -m benchmarks.run_all

# A standalone Prism job server on localhost:8073, for --runner PortableRunner --job_endpoint
# localhost:8073; its pid and log go to build/beam/run/. prism-down stops it and its workers.
prism-up: setup
	$(PY) -m pipeline.prism up

prism-down:
	$(PY) -m pipeline.prism down

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
