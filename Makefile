# Two commands do all the set-up: `make demo` and `make test`.
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.quantdoctor-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml requirements-qat.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,examples,ethos-u]'
	# tf-keras requires `tensorflow`, a second TensorFlow next to tensorflow-cpu: --no-deps.
	# Their real dependencies come with the [test] extra; tests/test_install.py checks
	# that exactly one TensorFlow distribution is installed.
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-qat.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/quantdoctor demo

# The HTML report is checked in a real headless browser: Debian's Chromium (installed if missing).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

# pytest exits 5 when it collects no test: make then fails, so "no tests" is never silent.
# Two pytest-xdist workers, a test file each at a time: most of a test's time is a worker child
# converting on one core, so two run side by side on a 2-core machine. Files keep their order
# (no reordering by size): tests/test_zz_catalog_coverage.py must run last in its worker.
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/preflight.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/testbed.py
	$(BIN)/python bench/fix.py
	$(BIN)/python bench/run_overhead.py
	$(BIN)/python bench/budget.py
	$(BIN)/python bench/npu.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
