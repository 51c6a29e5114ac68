# Two commands do all the set-up: `make demo` and `make test`.
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.quantdoctor-installed
NEWEST_PINS := tensorflow-cpu==2.21.0 ai-edge-litert==2.3.0

.PHONY: demo test test-fast compat wheel-test bench clean

$(STAMP): pyproject.toml requirements-qat.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The full suite runs on the newest supported release; `make compat` on the older ones.
	$(BIN)/python -m pip install --quiet -e '.[tensorflow-cpu,test,examples,aeq,ethos-u,viz]' $(NEWEST_PINS)
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
# Two pytest-xdist workers: most of a test's time is a worker child converting on one core, so two
# run side by side on a 2-core machine. Work stealing keeps both busy to the end; no test depends on
# the order of files or on which worker runs it (the catalog coverage check is judged by the
# controller from every worker's reports, tests/coverage_markers.py). Each xdist worker forks its
# conversions from one process that imported TensorFlow once (quantdoctor.isolation.prefork.py), except
# the tests marked `cold_spawn`.
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 --dist worksteal

# The inner loop: the same, without the slow tests and the tests of cold process isolation (signals,
# limits, crashes). It skips the catalog coverage check (a narrowed run); `make test` is what CI runs.
test-fast: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not slow and not cold_spawn"

# Compatibility: older supported releases, each in a virtual environment of its own, run the subset
# marked `compat` (catalog matchers, tf_private hooks, the demo, one test per command). CI runs the
# oldest release 2.16 (without ai-edge-litert: TensorFlow's own tf.lite.Interpreter) and the middle
# release 2.18 (with the oldest LiteRT of the tested range). TensorFlow 2.16 aborts converting the
# SavedModel that from_keras_model writes for most Keras 3 models (QD909): there the tests convert
# Keras' own model.export() (tests/models.py, keras_source).
COMPAT_RELEASES := 2.16 2.18
COMPAT_PINS_2.16 := tensorflow-cpu==2.16.2 tf-keras==2.16.0
COMPAT_PINS_2.18 := tensorflow-cpu==2.18.1 tf-keras==2.18.0 ai-edge-litert==1.2.0

.venv-tf%/.quantdoctor-installed: pyproject.toml requirements-qat.txt
	rm -rf .venv-tf$*
	$(PYTHON) -m venv .venv-tf$*
	.venv-tf$*/bin/python -m pip install --quiet -e '.[test,examples]' $(filter-out tf-keras==%,$(COMPAT_PINS_$*))
	.venv-tf$*/bin/python -m pip install --quiet --no-deps $(filter tf-keras==%,$(COMPAT_PINS_$*)) \
		$(filter tensorflow-model-optimization==%,$(shell cat requirements-qat.txt))
	touch $@

compat: $(foreach release,$(COMPAT_RELEASES),.venv-tf$(release)/.quantdoctor-installed)
	for release in $(COMPAT_RELEASES); do \
		echo "== compat: TensorFlow $$release"; \
		started=$$(date +%s); \
		.venv-tf$$release/bin/quantdoctor env || exit 1; \
		.venv-tf$$release/bin/python -m pytest -p no:xdist -p no:cacheprovider -m compat -q || exit 1; \
		echo "compat: TensorFlow $$release took $$(( $$(date +%s) - started )) s (its tests; the install not counted)"; \
	done

# The built sdist and wheel, installed as a user would: into a fresh environment that already holds
# the user's `tensorflow` (the full build, not -cpu), with no extra; then the demo, and a check that
# the install added no second TensorFlow distribution.
WHEEL_TENSORFLOW := tensorflow==2.18.1
WHEEL_VENV := .venv-wheel

wheel-test: $(STAMP)
	rm -rf dist $(WHEEL_VENV)
	$(BIN)/python -m build --outdir dist . > /dev/null
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet $(WHEEL_TENSORFLOW)
	$(WHEEL_VENV)/bin/python -m pip install --quiet "$$(ls dist/quantdoctor-*.whl)[examples]"
	$(WHEEL_VENV)/bin/python scripts/check_one_tensorflow.py
	$(WHEEL_VENV)/bin/quantdoctor env
	cd dist && ../$(WHEEL_VENV)/bin/quantdoctor demo > demo.txt && tail -n 3 demo.txt
	$(WHEEL_VENV)/bin/python scripts/check_one_tensorflow.py

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/preflight.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/testbed.py
	$(BIN)/python bench/fix.py
	$(BIN)/python bench/run_overhead.py
	$(BIN)/python bench/suite.py
	$(BIN)/python bench/budget.py
	$(BIN)/python bench/reduce.py
	$(BIN)/python bench/npu.py

clean:
	rm -rf $(VENV) .venv-tf* $(WHEEL_VENV) build dist src/*.egg-info .pytest_cache
