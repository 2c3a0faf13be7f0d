# scratchnn: every target sets itself up (virtual environment + install) on a fresh clone.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The course data, if it sits beside the project (../shared/data); override with SCRATCHNN_DATA=...
SCRATCHNN_DATA ?= $(wildcard ../shared/data)
export SCRATCHNN_DATA
export MPLBACKEND := Agg

.PHONY: help install demo test test-quick lint format bench bench-versions reproduce-all clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install scratchnn with its test tools and the dask extra

demo: $(STAMP)  ## train circles_shallow (the assignment's way) and circles_modern, evaluate and compare them
	$(BIN)/scratchnn train configs/circles_shallow.yaml --runs-dir runs | tee $(VENV)/demo.out
	$(BIN)/scratchnn evaluate "$$(tail -n 1 $(VENV)/demo.out)"
	$(BIN)/scratchnn train configs/circles_modern.yaml --runs-dir runs | tee $(VENV)/demo-modern.out
	$(BIN)/scratchnn evaluate "$$(tail -n 1 $(VENV)/demo-modern.out)"
	@$(BIN)/python -c 'import json, sys; a = json.load(open(sys.argv[1] + "/metrics.json"))["test"]["accuracy"]; \
		sys.exit(0 if a >= 0.95 else f"circles_modern: test accuracy {a:.4f} < 0.95")' "$$(tail -n 1 $(VENV)/demo-modern.out)"
	$(BIN)/scratchnn compare "$$(tail -n 1 $(VENV)/demo.out)" "$$(tail -n 1 $(VENV)/demo-modern.out)" \
		--plot runs/demo-curves.png
	@echo "Same rings, same 5 hidden units: single-sample SGD at lr 0.001 from small sigmoid weights keeps all 5 units" \
		"alike on the symmetric plateau (cost ~ ln 2 = 0.693), while tanh with xavier init and Adam on shuffled" \
		"mini-batches of 16 break that symmetry within 20 epochs and fit both rings (runs/demo-curves.png)."

lint: $(STAMP)  ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## lint, then the test suite
	$(BIN)/python -m pytest -q

# One worker per core, each with BLAS on one thread (several trainings at once: unpinned BLAS
# threads fight for the cores).
test-quick: $(STAMP)  ## the tests not marked slow, one worker per core (about 45 s on 2 cores)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow" -n auto

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## speed benchmarks (prints tables; not part of make test)
	$(BIN)/python benchmarks/bench.py

# The version bench-versions compares with: a git rev (tag, branch, commit); v0.1.0 when that tag
# exists, else it must be given (make bench-versions BASELINE=81d736a). Its worktree and venv
# live in $(BASELINE_DIR) (keep that folder out of git and ruff: add it to .gitignore).
BASELINE     ?= $(shell git rev-parse -q --verify 'v0.1.0^{commit}' >/dev/null && echo v0.1.0)
BASELINE_DIR := .bench-baseline
REPEATS      ?= 5
CASES        ?= abcd

bench-versions: $(STAMP)  ## time this code against BASELINE=<rev> (default v0.1.0): within 5%?
	@test -n "$(BASELINE)" || { echo "no tag v0.1.0: say which rev, make bench-versions BASELINE=<rev>" >&2; exit 2; }
	rev="$$(git rev-parse --verify '$(BASELINE)^{commit}')"; \
	if [ -e $(BASELINE_DIR) ] && [ "$$(git -C $(BASELINE_DIR) rev-parse HEAD 2>/dev/null)" != "$$rev" ]; then \
		git worktree remove --force $(BASELINE_DIR); \
	fi; \
	if [ ! -e $(BASELINE_DIR) ]; then git worktree add --detach $(BASELINE_DIR) "$$rev"; fi; \
	if [ ! -e $(BASELINE_DIR)/$(VENV)/.installed ]; then \
		$(PYTHON) -m venv $(BASELINE_DIR)/$(VENV); \
		$(BASELINE_DIR)/$(BIN)/python -m pip install --quiet --upgrade pip; \
		$(BASELINE_DIR)/$(BIN)/python -m pip install --quiet -e $(BASELINE_DIR); \
		touch $(BASELINE_DIR)/$(VENV)/.installed; \
	fi
	$(BIN)/python benchmarks/versions.py --baseline-python $(BASELINE_DIR)/$(BIN)/python --repeats $(REPEATS) --cases $(CASES)

reproduce-all: $(STAMP)  ## rerun every experiment of the course assignment, print ours beside theirs
	$(BIN)/scratchnn reproduce --runs-dir runs

clean:  ## remove the virtual environment and caches (keeps runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
