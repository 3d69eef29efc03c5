# mmaudit: `make audit` then `make test` on a fresh machine. Every target runs `setup` first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# faiss-cpu (default) or faiss-gpu: never both, they install the same `faiss` module.
FAISS  ?= cpu
CONFIG ?= pipelines/configs/sample.yaml
SAMPLE ?= data/sample
SHARDS ?= $(SAMPLE)/parquet $(SAMPLE)/webdataset
OUT    ?= runs/sample
RUN    ?= $(OUT)
PORT   ?= 8501
PYTEST_ARGS ?=

export NO_ALBUMENTATIONS_UPDATE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed-$(FAISS)

.PHONY: help setup system-deps sample fetch audit dashboard report clean-set test test-fast lint format clean bench bench-scorers bench-neighbours bench-kernels bench-memory bench-fetch bench-dashboard bench-e2e

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) system-deps ## create .venv and install mmaudit with pinned dependencies (idempotent)

$(STAMP): pyproject.toml requirements.lock requirements-build.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.3"  # --build-constraint
	$(BIN)/python -m pip install -q -c requirements.lock --build-constraint requirements-build.lock -e ".[$(FAISS),dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# hatesonar's ONNX graph needs the en_US.UTF-8 locale; the dashboard test drives Debian's chromium.
system-deps:
	@if ! locale -a 2>/dev/null | grep -qiE '^en_US\.utf-?8$$'; then \
	  echo "setup: generating the en_US.UTF-8 locale"; \
	  command -v locale-gen >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq locales >/dev/null; }; \
	  $(SUDO) sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && $(SUDO) locale-gen >/dev/null; fi
	@if ! command -v chromium >/dev/null; then \
	  echo "setup: installing Debian chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; fi

sample: setup ## build the embedded sample corpus into $(SAMPLE)
	$(BIN)/mmaudit sample --out $(SAMPLE)

fetch: setup ## download images of metadata SHARDS with img2dataset into OUT (resumable): make fetch SHARDS=meta/ OUT=data/fetched
	$(BIN)/mmaudit fetch --out $(OUT) $(foreach s,$(SHARDS),--shards $(s))

audit: setup ## audit SHARDS (default: the embedded sample) into the run folder OUT
	@if [ "$(SHARDS)" = "$(SAMPLE)/parquet $(SAMPLE)/webdataset" ]; then $(BIN)/mmaudit sample --out $(SAMPLE) --quiet; fi
	$(BIN)/mmaudit audit --config $(CONFIG) --out $(OUT) $(foreach s,$(SHARDS),--shards $(s)) \
	  $(if $(filter $(SAMPLE)/%,$(firstword $(SHARDS))),--set 'images.known_bad_lists=[$(SAMPLE)/known_bad.csv]')

# RUN given (make dashboard RUN=runs/x): that run; otherwise the latest finished run under runs/
LATEST_RUN = $$($(BIN)/python -c 'from audit.review import latest_run; print(latest_run())' 2>/dev/null || echo $(OUT))
dashboard: setup ## open the review dashboard on RUN (default: the latest finished run under runs/)
	$(BIN)/mmaudit dashboard --run "$(if $(filter command line environment,$(origin RUN)),$(RUN),$(LATEST_RUN))" --port $(PORT)

report: setup ## write RUN/report/ (report.html with plots, figures.json, flags/removal exports)
	$(BIN)/mmaudit report --run $(RUN)

DEST ?= $(RUN)-clean
clean-set: report ## cleaned copy of RUN's shards without the removal list's rows into DEST (resumable)
	$(BIN)/mmaudit apply-removals $(RUN) --to $(DEST)

# Test processes (pytest-xdist): one per core by default; a test file stays on one process, so its
# module fixtures (runs, clusters, servers) are built once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto
TEST_DIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

test: setup ## run the whole test suite (offline, CPU)
	$(BIN)/python -m pytest $(TEST_DIST) $(PYTEST_ARGS)

test-fast: setup ## the tests not marked slow
	$(BIN)/python -m pytest -m "not slow" $(TEST_DIST) $(PYTEST_ARGS)

BENCH_ROWS ?= 1000000
BENCH_DIM  ?= 512

bench: bench-scorers bench-kernels bench-neighbours bench-memory bench-fetch bench-dashboard bench-e2e ## every benchmark (JSON under bench/results/)

bench-dashboard: setup ## review dashboard over 1M flags in Chromium: filter change, row click, decision (s); server RSS
	$(BIN)/python -m audit.benchmarks.dashboard --out bench/results/dashboard.json --flags $(BENCH_ROWS) \
	  --summary bench/results/dashboard-summary.json

bench-fetch: setup ## img2dataset fetch images/s against a local HTTP server, and the metadata-join overhead
	$(BIN)/python -m audit.benchmarks.fetch --out bench/results/fetch.json

bench-memory: setup ## peak memory 10 vs 100 shards and a growing shard; end-to-end rows/s per stage
	$(BIN)/python -m audit.benchmarks.memory --out bench/results/memory.json

bench-e2e: setup ## 1M-row precomputed, cascade, text-only and JPEG audits vs the scorers' own one-core rates
	$(BIN)/python -m audit.benchmarks.e2e --out bench/results/e2e.json --markdown bench/results/e2e.md
	@mkdir -p docs/benchmarks && cp bench/results/e2e.json bench/results/e2e.md docs/benchmarks/

bench-kernels: setup ## int8 kernels vs float32 (CPU) / float16 (CUDA) on 1M x 512
	$(BIN)/python -m audit.kernels.bench --out bench/results/kernels.json --rows $(BENCH_ROWS) --dim $(BENCH_DIM)

bench-scorers: setup ## captions/s per text scorer and language detection (one core); images/s for open_nsfw, NudeNet, OCR, PDQ; PDQ hashes/s vs 10^6 hashes
	$(BIN)/python -m audit.benchmarks.scorers --out bench/results/scorers.json

bench-neighbours: setup ## FAISS near-duplicates/clusters/outliers on 1M synthetic 512-d vectors
	$(BIN)/python -m audit.neighbours.bench --out bench/results/neighbours.json --rows 1000000 --dim 512

lint: setup ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## remove runs, sample data and caches (keeps .venv)
	rm -rf runs data .pytest_cache .ruff_cache build dist *.egg-info
