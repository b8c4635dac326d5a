# Two commands on a fresh machine: `make train` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODEL   ?= lightgcn
DATASET ?= ml100k
ARGS    ?=
VENV    := .venv
PY      := $(VENV)/bin/python
# Feature encoders (MiniLM, EfficientNet-Lite0) need torch; torch 2.13.0 CPU is installable for Python 3.11,
# so they live in a second environment that `make data` uses when it exists.
FEATURES_VENV := .venv-features
DATA_PY := $(if $(wildcard $(FEATURES_VENV)/bin/python),$(FEATURES_VENV)/bin/python,$(PY))
# The newest python3.1x on the PATH or under pyenv: current JAX needs 3.12+, 3.11 still works with jax 0.10.
PYTHON  ?= $(shell for v in 13 12 11; do \
             for p in $$(command -v python3.$$v) $$HOME/.pyenv/versions/3.$$v.*/bin/python3.$$v; do \
               [ -x "$$p" ] && "$$p" -c 'import venv' 2>/dev/null && { echo "$$p"; exit 0; }; \
             done; done)
# The accelerator decides how JAX is installed: cpu | cuda12 | cuda13 | tpu (pyproject extras), detected from the OS by
# lgmrec_jax/hardware.py (stdlib only); or `system`: reuse the JAX already installed in $(PYTHON)'s site-packages
# (a venv with --system-site-packages, nothing downloaded; for machines without registry access). Override: ACCEL=...
comma   := ,
ACCEL   ?= $(shell [ -n "$(PYTHON)" ] && "$(PYTHON)" lgmrec_jax/hardware.py 2>/dev/null || echo cpu)
VENV_FLAGS ?= $(if $(filter system,$(ACCEL)),--system-site-packages,)
EXTRAS  := $(if $(filter cuda12 cuda13 tpu,$(ACCEL)),test$(comma)$(ACCEL),test)
# Keep glibc from returning freed arenas to the OS between sparse layers (measured slower otherwise).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

# Compile-only accelerator toolchain (lgmrec_jax/aot/): libtpu and the CUDA compiler plugin in their own venv, so that
# the training venv never probes for TPU chips at start-up. Not built with ACCEL=system (no registry access there).
AOT_VENV := .venv-aot
AOT_PY   := $(AOT_VENV)/bin/python
AOT_DEP  := $(if $(filter system,$(ACCEL)),,aot-venv)

.PHONY: help venv features-venv aot-venv train test data bench profile aot aot-table table ablations sweeps sparsity popularity clean

help:
	@echo "make train [MODEL=lightgcn|lgmrec|gume|freedom|bm3] [DATASET=ml100k|baby|sports|clothing|synthetic-tiny] [ARGS='--set model.alpha=0.3']"
	@echo "           [ACCEL=cpu|cuda12|cuda13|tpu|system]   (default: detected; now $(ACCEL))"
	@echo "make test | make data DATASET=... [RAW=dir [REPLACE=1]] | make features-venv | make bench | make profile"
	@echo "make aot ARGS='plan --model gume --dataset 10x-elec --generation v5e' | make aot-table   (TPU/GPU compilers)"
	@echo "make table | ablations | sweeps | sparsity | popularity  [DATASET=ml100k SEEDS=3 ARGS='--set train.epochs=200']"
	@echo "make table MODELS='lightgcn lgmrec gume freedom bm3' ARGS='--name main5_ml100k'   (default MODELS: lightgcn lgmrec gume)"

$(VENV)/.installed-$(ACCEL): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3.11+ found on PATH or under ~/.pyenv" >&2; exit 1; }
	@case "$(ACCEL)" in cpu|cuda12|cuda13|tpu|system) ;; *) echo "error: ACCEL=$(ACCEL): choose cpu, cuda12, cuda13, tpu or system" >&2; exit 2;; esac
	@echo "creating $(VENV) with $(PYTHON) for ACCEL=$(ACCEL)"
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
ifeq ($(ACCEL),system)
	@# No pip, no build backend, no downloads: the checkout goes on the venv's path by a .pth file.
	$(PY) -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "lgmrec_jax_checkout.pth").write_text("$(CURDIR)\n")'
else
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
endif
	$(PY) -m lgmrec_jax.hardware --check
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(VENV)/.installed-$(ACCEL)

$(FEATURES_VENV)/.installed: pyproject.toml
	@command -v python3.11 >/dev/null || { echo "error: the feature encoders need python3.11 (torch 2.13.0 CPU)" >&2; exit 1; }
	python3.11 -m venv $(FEATURES_VENV)
	$(FEATURES_VENV)/bin/python -m pip install -q --upgrade pip
	$(FEATURES_VENV)/bin/python -m pip install -q torch==2.13.0
	$(FEATURES_VENV)/bin/python -m pip install -q -e '.[features,test]'
	@touch $@

features-venv: $(FEATURES_VENV)/.installed

$(AOT_VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3.11+ found on PATH or under ~/.pyenv" >&2; exit 1; }
	@echo "creating $(AOT_VENV) with $(PYTHON): jax[tpu] (libtpu) and the CUDA compiler plugin, compile-only"
	$(PYTHON) -m venv $(AOT_VENV)
	$(AOT_PY) -m pip install -q --upgrade pip
	$(AOT_PY) -m pip install -q -e '.[test,aot]'
	@# The plugin must match jaxlib exactly; --no-deps: compiling for a GPU needs no CUDA libraries.
	$(AOT_PY) -m pip install -q --no-deps "jax-cuda12-plugin==$$($(AOT_PY) -c 'from importlib.metadata import version; print(version("jaxlib"))')" \
	    "jax-cuda12-pjrt==$$($(AOT_PY) -c 'from importlib.metadata import version; print(version("jaxlib"))')"
	@touch $@

aot-venv: $(AOT_VENV)/.installed

train: venv
	$(PY) -m lgmrec_jax.cli train --model $(MODEL) --dataset $(DATASET) $(ARGS)

# Test files run in parallel processes (pytest-xdist), one file per process so a file's shared fixtures (the 8-device
# subprocesses) run once: most tests wait on single-threaded XLA compiles, so 2 processes on 2 cores take ~0.7 of the
# serial time. At most 4; serial where xdist is absent (ACCEL=system uses the machine's own packages).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
test: venv $(AOT_DEP)
	$(if $(AOT_DEP),LGMREC_AOT_PYTHON=$(AOT_PY) ,)$(PY) -m pytest tests \
	  $$($(PY) -c 'import xdist' 2>/dev/null && [ $(TEST_WORKERS) -gt 1 ] && echo --numprocesses=$(TEST_WORKERS) --dist=loadfile)

data: venv
	$(DATA_PY) -m data_prep $(DATASET) $(if $(RAW),--raw $(RAW),) $(if $(REPLACE),--replace,)

bench: venv
	$(PY) -m experiments.bench $(ARGS)
	$(PY) -m experiments.step_account $(STEP_ARGS)

profile: venv
	$(PY) -m experiments.profile --model $(MODEL) --dataset $(DATASET) $(ARGS)

aot: aot-venv
	$(AOT_PY) -m experiments.aot $(ARGS)

aot-table: aot-venv
	$(AOT_PY) -m experiments.aot table --write $(ARGS)

# Paper-style experiments (experiments/): selection on validation only; tables and plots land in results/.
SEEDS ?= 3
MODELS ?= lightgcn lgmrec gume  # make table MODELS="lightgcn lgmrec gume freedom bm3" (any of models.MODEL_MODULES)
table: venv
	$(PY) -m experiments.run_table --models $(MODELS) --dataset $(DATASET) --seeds $(SEEDS) $(ARGS)

ablations: venv
	$(PY) -m experiments.ablations --dataset $(DATASET) --seeds $(SEEDS) $(ARGS)

sweeps: venv
	$(PY) -m experiments.sweeps alpha --dataset $(DATASET) --seeds $(SEEDS) $(ARGS)
	$(PY) -m experiments.sweeps hyper_num --dataset $(DATASET) --seeds $(SEEDS) $(ARGS)

sparsity: venv
	$(PY) -m experiments.sparsity --models lightgcn lgmrec gume --dataset $(DATASET) --seeds $(SEEDS) $(ARGS)

popularity: venv
	$(PY) -m experiments.popularity --models lightgcn lgmrec gume --dataset $(DATASET) --seeds $(SEEDS) $(ARGS)

clean:
	rm -rf $(VENV) $(AOT_VENV) .pytest_cache   # never runs/ or data/: those are the user's
