# The two set-up commands are `make demo` and `make test`; both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# OpenMP threads that spin while they wait make small steps several times slower on a busy 2-core machine,
# so the tests and the demo let them sleep. The benchmarks keep OpenMP's default, as a user's script has it.
test unit notebooks demo lab figures: export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: env test unit notebooks demo bench lab student figures clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Every notebook with nbval (outputs of cells tagged for checking are compared) and the unit tests, in one
# pytest run spread over JOBS processes (pytest-xdist), each file kept whole in one process: a notebook runs its
# cells in order in one kernel. The notebooks go first, since they are the longest files. Most of the work runs
# on one thread (the notebooks' setup() asks for one), so two processes keep a 2-core machine busy.
JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile --nbval-lax -p no:cacheprovider notebooks tests

unit: $(STAMP)
	$(PY) -m pytest -q tests

notebooks: $(STAMP)
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider notebooks

# A second `make demo` keeps the first one's files, in runs/demo/replaced-<time>/ (--overwrite moves, never deletes).
demo: $(STAMP)
	$(PY) -m minimaskrcnn demo --overwrite

bench: $(STAMP)
	$(PY) benchmarks/ops.py
	@if [ -f benchmarks/model.py ]; then $(PY) benchmarks/model.py; fi

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks

# Instructors: the notebooks without their cells tagged "solution" (student/), and the cells tagged
# "figure:<name>" as PNG at 200 dpi and SVG (figures/), each notebook run only up to its last figure cell.
student: $(STAMP)
	$(PY) notebooks/nbtools.py student --out student

figures: $(STAMP)
	$(PY) notebooks/nbtools.py figures --out figures

clean:
	rm -rf $(VENV) .pytest_cache
