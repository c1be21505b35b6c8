# Two set-up commands for a fresh machine (see README):
#   make demo   -> creates .venv, installs the project, runs the demo of the main job
#   make test   -> creates .venv, installs the project with test extras, runs the test suite
# and for developers:
#   make docs       -> builds the docs site into site/ (mkdocs --strict: a broken link or reference fails)
#   make notebooks  -> re-executes examples/*.ipynb in place (they are stored with their outputs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned, so that no resolver pulls another build later.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# The index torch comes from: empty = PyPI's default build (with CUDA, ~6 GB). A CPU-only machine:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu     (~1 GB venv instead)
TORCH_INDEX ?=
TORCH_INDEX_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple,)

.PHONY: install system-deps demo test docs notebooks bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# The built-in panorama world renders through EGL (Mesa's software renderer without a GPU).
system-deps:
	@if ldconfig -p | grep -q 'libEGL_mesa.so.0' && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri; \
	else echo "note: the built-in panorama world needs EGL: sudo apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"; fi

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_INDEX_ARGS) $(TORCH_PINS)
	$(BIN)/pip install --quiet -e ".[dev,docs]" $(TORCH_PINS)
	touch $@

install: system-deps $(VENV)/.installed

demo: install
	$(BIN)/btnk-env demo

test: install
	$(BIN)/python -m pytest -q

# The API pages find modules by the names the package installs (btnk_env.models, btnk_env.training):
# build/api_src/btnk_env is that tree as links into the checkout (models/ and training/ inside btnk_env/).
docs: install
	rm -rf build/api_src && mkdir -p build/api_src/btnk_env
	for f in $(CURDIR)/btnk_env/*; do ln -s "$$f" build/api_src/btnk_env/; done
	ln -s $(CURDIR)/models build/api_src/btnk_env/models && ln -s $(CURDIR)/training build/api_src/btnk_env/training
	$(BIN)/mkdocs build --strict

# stored at settings that run in minutes on two CPU cores: PPO for 1024 steps (a reader's default is
# 20,000), 12-frame rollouts (so the stored animations stay small)
notebooks: install
	BTNK_NOTEBOOK_TIMESTEPS=1024 BTNK_NOTEBOOK_EVAL_EPISODES=4 BTNK_NOTEBOOK_STEPS=12 $(BIN)/python -m tests.notebook_outputs examples/*.ipynb

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build site *.egg-info
