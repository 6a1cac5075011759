# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the releases available on the build machines (a CUDA build that also runs on CPU).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench serve clean face-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/simexplain explain --demo --out demo.png

$(VENV)/.installed-web: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[web]"
	touch $@

# The web page on http://localhost:8000/ (this machine only; see docs/web.md).
serve: $(VENV)/.installed-web
	$(BIN)/simexplain serve

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# Optional: the face-recognition model's weights (npm pack @vladmandic/face-api; keeps manifest, binary, LICENSE
# in ~/.cache/simexplain/face-api). Its tests skip without them.
face-model: $(VENV)/.installed
	$(BIN)/simexplain fetch-face-model

# ruff (style, line length 110) and the import contract of docs/architecture.md (pyproject's [tool.importlinter]).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) demo.png demo.svg
