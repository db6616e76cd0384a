# The two commands of the README: `make run` (job on the bundled data) and `make test`.
# Both set up the machine first (virtualenv + Maven-resolved jars), once.
VENV := .venv/bin
export SPARK_CONF_DIR := $(CURDIR)/conf
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/python
export SPARK_LOCAL_IP := 127.0.0.1
CONFIG ?= conf/online_retail.toml
ARGS ?=

.PHONY: setup run test lint bench clean
setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/spark-submit jobs/assign_personas.py --config $(CONFIG) $(ARGS)

test: setup
	$(VENV)/ruff check .
	$(VENV)/python -m pytest -q $(ARGS)

lint: setup
	$(VENV)/ruff check . && $(VENV)/ruff format --check .

bench: setup
	$(VENV)/python -m bench.affinity_bench $(ARGS)

clean:
	rm -rf output spark-warehouse .pytest_cache
