# One command to set up and run the demo, one to run the tests (README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup setup-pip lock demo test lint backbone clean

setup: $(VENV)/.installed

# uv installs exactly what uv.lock says (nothing is resolved at install time; --locked refuses a lock that no
# longer matches pyproject.toml: `make lock` renews it). uv itself lives in its own small venv, pinned.
# The lock's torch is the CPU wheel on disk and it leaves out torchvision / torchaudio / torchcodec
# ([tool.uv] in pyproject.toml says why).
UV_VERSION := 0.13.9
UV         := .uv/bin/uv

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install -q uv==$(UV_VERSION)

# --compile-bytecode: uv (unlike pip) leaves .py files uncompiled, and where PYTHONDONTWRITEBYTECODE is set (these
# machines) every process then compiles torch, transformers, vLLM and Prefect again: 15.2 s to import the CLI's
# stack against 6.6 s, and half of a cached demo's 32 s. It costs ~20 s once, here.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --compile-bytecode --python $(PYTHON) --extra cpu --extra dev
	$(BIN)/python -m compileall -q east_tasks flows
	touch $@

lock: | $(UV)
	$(UV) lock --python $(PYTHON)

# Without uv (or away from the registries uv.lock was made against): pip resolves afresh.
setup-pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[cpu,dev]"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(VENV)/.installed

demo: setup
	$(BIN)/east run --preset tiny

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .

backbone: setup
	$(BIN)/east bootstrap

clean:
	rm -rf data
