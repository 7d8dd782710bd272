# Two commands for a new user:  `make repro`  and  `make test`.
# Both create .venv on first use and reuse it afterwards (a stamp keyed on the lock file).
PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
# CPU machines keep the CPU build of torch; a GPU user passes CONSTRAINTS= (see README).
CONSTRAINTS ?= requirements/constraints-cpu.txt
STAMP       := $(VENV)/.installed
PROFILE     ?=
PARAMS      ?=   # extra overrides for params.yaml, e.g. PARAMS="data.folder=/data/photos" (full/gpu need one)
PYTEST_ARGS ?=

.PHONY: install repro test params bench clean-venv
install: $(STAMP)

# lock.txt pins the core, gensr[train] and gensr[dev] alike, so the project itself installs --no-deps.
$(STAMP): requirements/lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (gensr needs Python 3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/lock.txt $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# params.yaml is generated from conf/ exactly as `dvc exp run` composes it (one source of truth).
params: $(STAMP)
	$(VENV)/bin/gensr params $(if $(PROFILE),profile=$(PROFILE)) $(PARAMS)

repro: params
	@test -d .dvc || $(VENV)/bin/dvc init --quiet $(if $(wildcard .git),,--no-scm)
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/dvc repro

test: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) bench/prepare.py

clean-venv:
	rm -rf $(VENV)
