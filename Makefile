# metarl: two commands do everything on a fresh machine: `make test` and `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
SCALE  ?= quick
STAMP   = $(VENV)/.installed

.PHONY: venv test test-fast bench bench-setup peer-venvs report bench-throughput bench-meta-critic bench-outer-value \
        bench-model-based-critic bench-metagenrl bench-metagenrl-ablations install-cuda clean \
        gpu-wheels bench-gpu bench-gpu-dry

# Bytecode: a machine whose environment says PYTHONDONTWRITEBYTECODE=1 makes every Python process compile
# each module it imports from source, ~3 s of CPU for jax, flax and orbax alone (4.7 -> 1.8 s per start),
# and the tests and benchmarks start hundreds of processes. The recipes write it once, into the venv
# (PYTHONPYCACHEPREFIX: no __pycache__ folders in the tree), and read it back.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX := $(abspath $(VENV))/pycache

# --no-compile: no byte-compiling of every installed module (35 s of CPU); Python compiles what it imports.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# One worker per logical CPU (pytest-xdist; `auto` counts physical cores, one on a VM whose two vCPUs share a
# core); a test file stays on one worker, so its module fixtures are built once.
test: $(STAMP)
	$(PY) -m pytest -q -x -n logical --dist loadfile --durations=15 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# The main job: every paper's quick-scale table plus throughput, on the CPU; then the results index.
# The throughput part runs alone (it measures speed). The four paper parts then run two at a time: one after
# another they keep 1.4 of the 2 cores busy on average (XLA compiles a program on little more than one core,
# and small networks step on one), side by side 1.8 (reports/make-bench-quick). Their tables do not depend on
# it, only their wall and compile times do (and the Meta-Critic '+updates' K, a measured wall-time ratio).
# Each part's output shows when it ends and goes to results/logs/<part>.log as it runs (progress lines every
# 60 s); BENCH_JOBS=1 runs the parts one by one with live progress bars. The order makes the two lanes even:
# meta-critic and model-based-critic start together, metagenrl follows meta-critic (the shorter) and
# outer-value the model-based critic (~13.5 min each on the development CPU; reports/make-bench-quick).
# The rejax comparison (24 more whole-run compilations) runs with `make bench-throughput` alone, so that
# `make bench` stays within its budget on a 2-core CPU.
PAPER_PARTS = bench-meta-critic bench-model-based-critic bench-metagenrl bench-outer-value
BENCH_JOBS ?= 2
LANES = $(if $(filter 1,$(BENCH_JOBS)),,BENCH_LOG=1 TQDM_MININTERVAL=60)

bench: THROUGHPUT_FLAGS = --no-rejax
bench: bench-setup bench-throughput
	@echo "== the paper parts, $(BENCH_JOBS) at a time: $(PAPER_PARTS:bench-%=%)$(if $(LANES), (each part's \
	output shows when it ends; meanwhile: tail -f results/logs/<part>.log),)"
	@$(LANES) $(MAKE) --no-print-directory -j$(BENCH_JOBS) --output-sync=target $(PAPER_PARTS)
	@$(MAKE) --no-print-directory report

# Our venv and the throughput part's peer venvs (Brax, PyTorch) built side by side: mostly pip waiting on
# the disk, ~25 s each on a 2-core CPU. A peer venv that cannot be built is tried again, and reported, by the
# throughput part.
bench-setup:
	@$(MAKE) --no-print-directory -j2 $(STAMP) peer-venvs

peer-venvs:
	$(PYTHON) -m benchmarks.peers.drivers brax torch

# results/index.md: every table and figure under results/ with its run record (no jax; under a second).
report: $(STAMP)
	$(PY) -m metarl.report --root results

# A part's command; with BENCH_LOG set (make bench's lanes) its output also goes to results/logs/<name>.log
# while it runs, and is printed whole when it ends, with the command's exit status.
part = $(if $(BENCH_LOG),mkdir -p results/logs && { $(2) > results/logs/$(1).log 2>&1; s=$$?; \
	cat results/logs/$(1).log; exit $$s; },$(2))

bench-throughput: $(STAMP)
	$(PY) -m benchmarks.throughput --scale $(SCALE) $(THROUGHPUT_FLAGS)

bench-meta-critic: $(STAMP)
	$(call part,meta_critic,$(PY) -m benchmarks.meta_critic --scale $(SCALE))

bench-outer-value: $(STAMP)
	$(call part,outer_value,$(PY) -m benchmarks.outer_value --scale $(SCALE))

bench-model-based-critic: $(STAMP)
	$(call part,model_based_critic,$(PY) -m benchmarks.model_based_critic --scale $(SCALE))

bench-metagenrl: $(STAMP)
	$(call part,metagenrl,$(PY) -m benchmarks.metagenrl --scale $(SCALE))

# MetaGenRL's Section 5.2 ablations (not part of `make bench`: six meta-training runs).
bench-metagenrl-ablations: $(STAMP)
	$(PY) -m benchmarks.metagenrl --scale $(SCALE) --ablations

# On a GPU machine: replace the CPU jaxlib with the CUDA build of the same version.
install-cuda: $(STAMP)
	$(PY) -m pip install -q "jax[cuda12]==0.10.2"

# The accelerator run kit (docs/gpu.md). Here: download the wheels the GPU image lacks into .whl/
# (pip only, no venv needed). There: install them into $(GPU_SITE) and run the time-boxed script with
# the image's own python3 (its jax + CUDA); results in results/gpu/, or in $OUT where the environment
# sets it (the device tool does, and a killed command still returns what is there).
GPU_PY   ?= python3
GPU_SITE ?= /tmp/metarl-site
BUDGET   ?= 450
OUT      ?= results/gpu

gpu-wheels:
	$(PYTHON) -m benchmarks.gpu_wheels

bench-gpu:
	if ls .whl/*.whl >/dev/null 2>&1; then $(GPU_PY) -m pip install -q --no-index --no-deps --no-compile \
	  --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl; fi
	PYTHONPATH=$(GPU_SITE):$$PYTHONPATH PYTHONUNBUFFERED=1 $(GPU_PY) -m benchmarks.gpu --budget-s $(BUDGET) --out $(OUT)

# The same script at tiny sizes on the CPU (what tests/test_gpu_kit.py runs).
bench-gpu-dry: $(STAMP)
	$(PY) -m benchmarks.gpu --dry-run --out $(OUT)

clean:
	rm -rf $(VENV) .jax_cache results
