# Two set-up commands for a fresh machine (see README):
#   make demo   -> creates .venv, installs the project, runs the demo of the main job
#   make test   -> creates .venv, installs the project with test extras, runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned, so that no resolver pulls another build later.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e ".[dev]" $(TORCH_PINS)
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/btnk-env demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
