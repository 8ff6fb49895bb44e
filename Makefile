# metarl: two commands do everything on a fresh machine: `make test` and `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
SCALE  ?= quick
STAMP   = $(VENV)/.installed

.PHONY: venv test test-fast bench report bench-throughput bench-meta-critic bench-outer-value \
        bench-model-based-critic bench-metagenrl bench-metagenrl-ablations install-cuda clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -x --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# The main job: every paper's quick-scale table plus throughput, on the CPU; then the results index.
bench: bench-throughput bench-meta-critic bench-outer-value bench-model-based-critic bench-metagenrl
	@$(MAKE) --no-print-directory report

# results/index.md: every table and figure under results/ with its run record (no jax; under a second).
report: $(STAMP)
	$(PY) -m metarl.report --root results

bench-throughput: $(STAMP)
	$(PY) -m benchmarks.throughput --scale $(SCALE)

bench-meta-critic: $(STAMP)
	$(PY) -m benchmarks.meta_critic --scale $(SCALE)

bench-outer-value: $(STAMP)
	$(PY) -m benchmarks.outer_value --scale $(SCALE)

bench-model-based-critic: $(STAMP)
	$(PY) -m benchmarks.model_based_critic --scale $(SCALE)

bench-metagenrl: $(STAMP)
	$(PY) -m benchmarks.metagenrl --scale $(SCALE)

# MetaGenRL's Section 5.2 ablations (not part of `make bench`: six meta-training runs).
bench-metagenrl-ablations: $(STAMP)
	$(PY) -m benchmarks.metagenrl --scale $(SCALE) --ablations

# On a GPU machine: replace the CPU jaxlib with the CUDA build of the same version.
install-cuda: $(STAMP)
	$(PY) -m pip install -q "jax[cuda12]==0.10.2"

clean:
	rm -rf $(VENV) .jax_cache results
