# The two commands of the README: `make run` (job on the bundled data) and `make test`.
# Both set up the machine first (virtualenv + Maven-resolved jars), once.
VENV := .venv/bin
export SPARK_CONF_DIR := $(CURDIR)/conf
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/python
export SPARK_LOCAL_IP := 127.0.0.1
CONFIG ?= conf/online_retail.toml
ARGS ?=

.PHONY: setup run test test-slow lint bench clean
setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/spark-submit jobs/assign_personas.py --config $(CONFIG) $(ARGS)

# pytest exits 5 when it collected nothing: say so instead of failing with no message.
test: setup
	$(VENV)/ruff check .
	@rc=0; $(VENV)/python -m pytest -q $(ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): check the test paths and -m filter"; fi; \
	exit $$rc

# Benchmark-style tests marked slow; none selected is not an error here.
test-slow: setup
	@rc=0; $(VENV)/python -m pytest -q -m slow $(ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no slow tests selected"; rc=0; fi; exit $$rc

lint: setup
	$(VENV)/ruff check . && $(VENV)/ruff format --check .

bench: setup
	$(VENV)/python -m bench.affinity_bench $(ARGS)

clean:
	rm -rf output spark-warehouse .pytest_cache
