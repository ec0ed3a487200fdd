# customer-value: `make` lists the targets. Every target bootstraps .venv on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-stamp
# Every command keeps its compiled bytecode in .venv/pycache, also where the environment sets
# PYTHONDONTWRITEBYTECODE (containers, this project's CI): otherwise each run compiles pandas,
# scikit-learn, MLflow and XGBoost's Python again. Measured on 2 cores: `python -m serving.batch
# --help` 5.1 -> 1.9 s of CPU; the quick tiers' start-up and collection 21 -> 7 s of CPU.
export PYTHONDONTWRITEBYTECODE :=
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
UV_VERSION := 0.9.18

# Demo data and training inputs (override on the command line: make train ORDERS=my.csv ...)
CUSTOMERS ?= 50000
SEED ?= 7
DATA_DIR ?= data/demo
ORDERS ?=
EVENTS ?=
COLUMNS ?=
HORIZON_DAYS ?= 365
# One shop, one model: the registered model is named from ORDERS (customer-value for the demo);
# NAME= names it yourself, the same NAME for train, score, impact, promote and serve.
NAME ?=
NAME_FLAG = $(if $(NAME),--name $(NAME))

.PHONY: help install lock data train check-data backtest promote ui score score-spark sanity impact report monitor nightly serve bento serve-bento test test-fast test-served lint format bench bench-all bench-batch bench-spark bench-online soak soak-redis clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --python $(PY) -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with the versions in constraints.txt

# The spark extra (pyspark, ~320 MB) only for what needs it: make test, score-spark, bench-spark.
SPARK_STAMP := $(VENV)/.spark-stamp
$(SPARK_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(PY) -c constraints.txt -e '.[dev,spark]'
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } || \
	  { echo "Spark needs Java 17 or later: apt-get install openjdk-17-jre-headless"; exit 2; }
	@touch $(SPARK_STAMP)

lock: $(STAMP) ## Re-resolve constraints.txt from pyproject.toml (then commit it)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --extra spark -o constraints.txt

$(DATA_DIR)/orders.parquet: | $(STAMP)
	$(PY) -m demo --customers $(CUSTOMERS) --seed $(SEED) --out $(DATA_DIR)

data: $(DATA_DIR)/orders.parquet ## Generate the synthetic storefront under data/demo (CUSTOMERS=50000 SEED=7)

# The search is bounded by its trials, so a run is reproducible to the digit; TIME_BUDGET=
# (seconds) adds a bound that makes the model depend on the machine's load.
TRIALS ?= 4
TIME_BUDGET ?=
TRAIN_FLAGS = --horizon-days $(HORIZON_DAYS) --max-trials $(TRIALS) $(if $(TIME_BUDGET),--time-budget $(TIME_BUDGET)) $(if $(FORCE),--force) \
	$(if $(ORDERS),--orders $(ORDERS)) $(if $(EVENTS),--events $(EVENTS)) \
	$(if $(COLUMNS),--columns $(COLUMNS)) $(NAME_FLAG) $(if $(LEVEL_ORIGINS),--level-origins $(LEVEL_ORIGINS))

train: $(STAMP) ## Train, evaluate vs baselines, track in MLflow, register, promote (ORDERS= EVENTS= COLUMNS= HORIZON_DAYS= TRIALS=4 TIME_BUDGET= FORCE=1 LEVEL_ORIGINS=2)
	$(PY) -m training.train $(TRAIN_FLAGS)

check-data: $(STAMP) $(if $(ORDERS),,$(DATA_DIR)/orders.parquet) ## Is the data enough to train? Readiness report and verdict (ORDERS= EVENTS= COLUMNS= HORIZON_DAYS=)
	$(PY) -m training.readiness --horizon-days $(HORIZON_DAYS) \
	  $(if $(ORDERS),--orders $(ORDERS) $(if $(EVENTS),--events $(EVENTS)),--orders $(DATA_DIR)/orders.parquet --events $(DATA_DIR)/service_events.parquet) \
	  $(if $(COLUMNS),--columns $(COLUMNS))

# Backtest: replay training at past cutoffs of your own data (needs ORDERS and CUTOFFS).
CUTOFFS ?=
COHORT ?=
BACKTEST_OUT ?=
backtest: $(STAMP) ## How training would have done at past cutoffs, beside BG/NBD and Pareto/NBD (ORDERS= CUTOFFS="2007-07-15 ..." HORIZON_DAYS= COLUMNS= COHORT="FIRST LAST" SEEDS=3)
	@test -n "$(ORDERS)" -a -n "$(CUTOFFS)" || { echo "usage: make backtest ORDERS=orders.csv CUTOFFS='2024-01-01 2024-07-01' [HORIZON_DAYS=365 COLUMNS=... EVENTS=... COHORT='2023-01-01 2023-03-31' BACKTEST_OUT=report.md SEEDS=3]"; exit 2; }
	$(PY) -m training.backtest --orders $(ORDERS) --horizon-days $(HORIZON_DAYS) \
	  $(foreach c,$(CUTOFFS),--cutoff $(c)) $(if $(EVENTS),--events $(EVENTS)) \
	  $(if $(COLUMNS),--columns $(COLUMNS)) $(if $(COHORT),--cohort $(COHORT)) \
	  $(if $(BACKTEST_OUT),--out $(BACKTEST_OUT)) $(if $(SEEDS),--seeds $(SEEDS))

promote: $(STAMP) ## Show candidate vs champion and baselines; FORCE=1 promotes the candidate (VERSION=N for another)
	$(PY) -m training.promote $(if $(VERSION),--version $(VERSION)) $(if $(FORCE),--force) \
	  $(if $(ORDERS),--orders $(ORDERS)) $(NAME_FLAG)

UI_PORT ?= 5000
ui: $(STAMP) ## MLflow UI on http://127.0.0.1:5000 (the local tracking store)
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(UI_PORT) \
	  --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/models/mlflow.db}

CUTOFF ?= latest
DEFAULT_SCORES := models/scores/scores.parquet
OUT ?= $(DEFAULT_SCORES)
# The run archive (serving.insight.run_archive): a run scored to the default place is kept there.
RUNS ?= models/runs
FEATURES_OUT ?=
# The lookup store (default: online_store.sqlite beside the feature table; redis://... or none).
STORE ?=
score: $(STAMP) ## Score the whole base with the champion (ORDERS= EVENTS= COLUMNS= CUTOFF=latest OUT=...parquet|.csv FEATURES_OUT= STORE=)
	$(PY) -m serving.batch --cutoff $(CUTOFF) --out $(OUT) $(NAME_FLAG) \
	  $(if $(ORDERS),--orders $(ORDERS)) $(if $(EVENTS),--events $(EVENTS)) \
	  $(if $(COLUMNS),--columns $(COLUMNS)) $(if $(FEATURES_OUT),--features-out $(FEATURES_OUT)) \
	  $(if $(STORE),--store $(STORE))
	$(if $(filter $(DEFAULT_SCORES),$(OUT)),$(PY) -m serving.insight.run_archive --scores $(OUT) --runs $(RUNS))

# The same scoring on Apache Spark (local[*] by default; SPARK_MASTER=spark://host:7077, yarn, ...).
# It writes the online feature table and the scores beside it, so `make serve` answers from it.
SPARK_MASTER ?=
SPARK_OUT ?= models/scores/spark/scores
score-spark: $(SPARK_STAMP) ## Score the whole base on Spark (ORDERS= EVENTS= COLUMNS= CUTOFF=latest SPARK_MASTER=local[*] SPARK_OUT=)
	$(PY) -m serving.spark --cutoff $(CUTOFF) --out $(SPARK_OUT) $(NAME_FLAG) \
	  --features-out $(if $(FEATURES_OUT),$(FEATURES_OUT),models/scores/online_features.parquet) \
	  $(if $(ORDERS),--orders $(ORDERS)) $(if $(EVENTS),--events $(EVENTS)) \
	  $(if $(COLUMNS),--columns $(COLUMNS)) $(if $(SPARK_MASTER),--master '$(SPARK_MASTER)')

sanity: $(STAMP) ## Count the scored rows that contradict themselves or the customer's history (after `make score`; OUT=)
	$(PY) -m serving.sanity --scores $(OUT)

IMPACT_OUT ?= models/scores/impact.parquet
impact: $(STAMP) ## CLV and churn at stake from late deliveries, returns, bad tickets: a model-based what-if (ORDERS= EVENTS= COLUMNS= CUTOFF=latest IMPACT_OUT=...parquet|.csv)
	$(PY) -m serving.impact --cutoff $(CUTOFF) --out $(IMPACT_OUT) $(NAME_FLAG) \
	  $(if $(ORDERS),--orders $(ORDERS)) $(if $(EVENTS),--events $(EVENTS)) \
	  $(if $(COLUMNS),--columns $(COLUMNS))

MARGIN ?= 0.3
# The impact table of `make impact`, when there is one.
IMPACT ?= $(wildcard $(IMPACT_OUT))
REPORT_OUT ?= models/scores/report.html
report: $(STAMP) ## One HTML report on the scores (after `make score`): quality vs baselines, segments, risks, budget; logged to the model's run (MARGIN=0.3 IMPACT= REPORT_OUT=)
	$(PY) -m serving.report --scores $(OUT) --out $(REPORT_OUT) --margin $(MARGIN) \
	  $(if $(ORDERS),--orders $(ORDERS) $(if $(EVENTS),--events $(EVENTS),--no-service-data),--events $(DATA_DIR)/service_events.parquet) \
	  $(if $(IMPACT),--impact $(IMPACT)) $(if $(COLUMNS),--columns $(COLUMNS))

# Retrain is recommended (exit status 4) past this revenue error, % (serving.insight.monitor).
THRESHOLD ?=
monitor: $(STAMP) ## How earlier runs did (predicted vs actual so far, Gini, AUC, ECE) and drift since the last run; exit 4 = retrain recommended (RUNS=models/runs ORDERS= THRESHOLD=25)
	$(PY) -m serving.insight.monitor --runs $(RUNS) --scores $(OUT) \
	  $(if $(ORDERS),--orders $(ORDERS)) $(if $(COLUMNS),--columns $(COLUMNS)) \
	  $(if $(THRESHOLD),--threshold $(THRESHOLD))

# The nightly job: check-data, score (table + online store), archive, monitor, report, under a
# lock (models/nightly.lock). Exit status: 0 done, 4 retrain recommended, 10-14 the step that
# failed, 75 another run holds the lock.
nightly: $(STAMP) ## check-data + score + archive + monitor + report under a lock; one line per step (ORDERS= EVENTS= COLUMNS= NAME= HORIZON_DAYS= THRESHOLD=)
	$(PY) -m serving.nightly --out $(OUT) --runs $(RUNS) --report-out $(REPORT_OUT) \
	  --horizon-days $(HORIZON_DAYS) $(NAME_FLAG) \
	  $(if $(ORDERS),--orders $(ORDERS)) $(if $(EVENTS),--events $(EVENTS)) \
	  $(if $(COLUMNS),--columns $(COLUMNS)) $(if $(THRESHOLD),--threshold $(THRESHOLD))

PORT ?= 3000
# Lookups from the embedded lookup store of the last `make score` when there is one (shared by
# the workers, nothing loaded per worker); CUSTOMER_VALUE_STORE=redis://... for Redis, or
# CUSTOMER_VALUE_STORE= (empty) for the Parquet table loaded into each worker.
EMBEDDED_STORE := $(wildcard models/scores/online_store.sqlite)
serve: $(STAMP) ## Serve the champion on http://127.0.0.1:3000 (after `make score`; CUSTOMER_VALUE_API_KEY= CUSTOMER_VALUE_STORE= optional)
	CUSTOMER_VALUE_STORE=$${CUSTOMER_VALUE_STORE-$(if $(EMBEDDED_STORE),$(CURDIR)/$(EMBEDDED_STORE))} \
	CUSTOMER_VALUE_MODEL_URI=$${CUSTOMER_VALUE_MODEL_URI:-$$($(PY) -m training.model_name $(if $(ORDERS),--orders $(ORDERS)) $(NAME_FLAG))} \
	$(BIN)/bentoml serve serving.online.service:CustomerValue --host 127.0.0.1 --port $(PORT)

bento: $(STAMP) ## Build a Bento (models/bentoml) that `bentoml serve customer-value:latest` runs
	BENTOML_HOME=$(CURDIR)/models/bentoml $(BIN)/bentoml build

# A Bento runs in its own folder: it is given this checkout's store and feature table by
# absolute path (override with MLFLOW_TRACKING_URI= CUSTOMER_VALUE_FEATURES=).
serve-bento: $(STAMP) ## Serve the latest Bento of `make bento` on http://127.0.0.1:3000 with this checkout's model and features
	BENTOML_HOME=$(CURDIR)/models/bentoml \
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/models/mlflow.db} \
	CUSTOMER_VALUE_FEATURES=$${CUSTOMER_VALUE_FEATURES:-$(CURDIR)/models/scores/online_features.parquet} \
	$(BIN)/bentoml serve customer-value:latest --host 127.0.0.1 --port $(PORT)

# The report test renders HTML in headless Chromium (Debian's package, as root with apt-get).
CHROMIUM_NEEDED = @command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	{ echo "chromium is needed for the report test: apt-get install chromium"; exit 2; }

# The Redis lookup store's tests start Debian's redis-server on a free port (as root with apt-get).
REDIS_NEEDED = @command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } || \
	{ echo "redis-server is needed for the Redis lookup store's tests: apt-get install redis-server"; exit 2; }

# The database tests start Debian's PostgreSQL on a free port (initdb/pg_ctl are not on PATH there).
POSTGRES_NEEDED = @ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	{ apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } || \
	{ echo "postgresql is needed for the database tests: apt-get install postgresql"; exit 2; }

# The whole suite on TEST_WORKERS=2 pytest-xdist workers, a test file on one worker, one
# OpenMP thread each (as the quick tiers below, for the same reasons). Much of the suite waits:
# on a server's start, on Spark's JVM, on PostgreSQL; a second worker fills those waits.
# Measured on the 2-core machine (2026-12-07, the same 889 tests): 11 min 41 s in one process,
# 7 min 7 s on two workers. Every server, Redis and PostgreSQL a test starts listens on a free
# port, and every worker has its own folders and MLflow store (tests/conftest.py).
test: $(STAMP) $(SPARK_STAMP) ## Run the whole test suite (fast tests + server/slow/browser/spark/postgres suites), on TEST_WORKERS=2 processes
	$(CHROMIUM_NEEDED)
	$(REDIS_NEEDED)
	$(POSTGRES_NEEDED)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q --durations=10 -n $(TEST_WORKERS) --dist loadfile

# The two quick tiers: each on two worker processes (pytest-xdist, TEST_WORKERS=2), a test
# file's tests on one worker (--dist loadfile: a module's fixtures are built once); each worker
# has its own temporary folders and MLflow store (tests/conftest.py).
# - test-fast: what needs no registered model (features, training's parts, insight, the demo,
#   each command's argument and input handling). It registers no model and runs no training
#   pipeline; the model tests fit models of a few trees.
# - test-served: the tests that score with the small served model (batch, service, reload,
#   impact, monitor) or test the registry itself; marked `served` by tests/conftest.py from
#   the fixtures they use. The served model is fit in seconds once per worker.
# Both leave out the slow/server/browser/spark/postgres suites that `make test` runs, and the
# Spark folder is not even collected (importing PySpark costs each worker 2.4 s).
# One OpenMP thread: each worker runs one test at a time, and on a small machine shared with
# other work XGBoost's spinning thread pool made a 10-tree fit 40x slower (0.15 s -> 6.5 s).
# The property tests run a few examples each (hypothesis profile "fast", tests/conftest.py).
TEST_WORKERS ?= 2
QUICK_TESTS = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
	  $(PY) -m pytest -q --durations=10 --hypothesis-profile=fast -n $(TEST_WORKERS) --dist loadfile \
	  --ignore=tests/spark
QUICK_MARKERS = not slow and not server and not browser and not spark and not postgres
test-fast: $(STAMP) ## Run the fast offline tests that need no registered model, on TEST_WORKERS=2 processes
	$(QUICK_TESTS) -m "$(QUICK_MARKERS) and not served"

test-served: $(STAMP) ## Run the offline tests that use a registered model (the small served one, the registry tests), on TEST_WORKERS=2 processes
	$(QUICK_TESTS) -m "$(QUICK_MARKERS) and served"

lint: $(STAMP) ## ruff lint + format check + mypy type check + import contract (lint-imports; pyproject.toml)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports

format: $(STAMP) ## ruff format + autofix
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: $(STAMP) ## Feature-building benchmark (50k, 200k, 1M customers); writes bench/RESULTS.md figures to stdout
	$(PY) bench/features_bench.py

bench-batch: $(STAMP) ## Batch-scoring benchmark on the 1M-customer bench data (needs `make bench` data and a model)
	$(PY) bench/batch_bench.py

WRK_NEEDED = @command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } || \
	{ echo "wrk is needed: apt-get install wrk (or run bench/online_bench.py --client httpx)"; exit 2; }

bench-spark: $(SPARK_STAMP) ## Batch scoring, pandas vs Spark local[2], on 200k and 1M customers with events (needs a model)
	$(PY) bench/spark_bench.py

# Issue 25's table in one run (bench/all.py): demo store, training, batch, /score vs /livez, storefront.
BENCH_WORK ?= /tmp/customer-value-bench-all
bench-all: $(STAMP) ## Training, batch and online figures in one table (CUSTOMERS=1000000 BENCH_WORK=/tmp/... TIME_BUDGET=)
	$(WRK_NEEDED)
	$(PY) bench/all.py --customers $(CUSTOMERS) --work $(BENCH_WORK) $(if $(TIME_BUDGET),--time-budget $(TIME_BUDGET))

bench-online: $(STAMP) ## Online benchmark: wrk against a local server (needs `make train score`; installs wrk with apt-get if missing)
	$(WRK_NEEDED)
	$(PY) bench/online_bench.py

SOAK_MINUTES ?= 5
soak: $(STAMP) ## Soak: 50 storefront connections (100 ms think) for SOAK_MINUTES=5, a row per 30 s (needs `make train score`)
	$(WRK_NEEDED)
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)

soak-redis: $(STAMP) ## Redis soak: storefront load for SOAK_MINUTES=5 while the Redis store restarts empty twice and hangs once; fails on any wrong answer or 500 (needs `make train score`)
	$(REDIS_NEEDED)
	$(PY) bench/redis_soak.py --minutes $(SOAK_MINUTES)

clean: ## Remove .venv, generated data and model artifacts
	rm -rf $(VENV) data models/mlflow.db models/mlartifacts models/bentoml models/scores models/runs
