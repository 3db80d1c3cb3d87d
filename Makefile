# Conveyor: exactly-once bridges into Kafka, and a Connect suite that lands them as tables.
# `make help` lists the targets. Every target that needs containers depends on `engine`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
COMPOSE_FILE := docker/compose.yml
# Loads DOCKER_HOST (written by the engine bootstrap) and the local stack's credentials.
WITH_ENV := set -a && . ./.engine/env && . ./.engine/secrets.env && set +a &&
COMPOSE  := $(WITH_ENV) docker-compose -f $(COMPOSE_FILE) -p conveyor

.PHONY: help
help: ## Show this help: every target with one line on what it does
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: engine
engine: ## Make sure a Docker engine answers (installs and starts Debian's where none does)
	@docker/engine/bootstrap.sh
	@docker/engine/local-secrets.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the project and its development tools

.PHONY: images
images: engine ## Build every image in docker/ (cached; fast when nothing changed)
	$(COMPOSE) --profile s3 build

.PHONY: up
up: venv images ## Start the whole stack, wait until every service is healthy, apply the local connectors
	@$(WITH_ENV) $(PY) -m devstack.stack preflight
	@$(WITH_ENV) $(PY) -m devstack.stack up
	@# The local profile's sinks land the SLA exporter's canaries: without them its
	@# canary alerts would page on a stack nobody has touched yet. Idempotent.
	@$(WITH_ENV) $(VENV)/bin/conveyor-connectors apply --profile local

.PHONY: down
down: engine ## Stop the stack; its data stays in named volumes
	$(COMPOSE) --profile s3 down

.PHONY: clean-stack
clean-stack: engine ## Stop the stack and delete its volumes (all local Kafka and warehouse data)
	$(COMPOSE) --profile s3 down -v

.PHONY: logs
logs: engine ## Follow the logs of every service (SERVICE=name for one)
	$(COMPOSE) logs -f --tail=100 $(SERVICE)

.PHONY: demo
demo: venv up ## Run the pipeline locally and print a summary of what landed
	@$(WITH_ENV) $(PY) -m demo

.PHONY: lint
lint: venv ## ruff and mypy over the Python code
	$(VENV)/bin/ruff check sidecar connectors devstack demo reconcile sla fulfilment tests bench
	$(VENV)/bin/mypy

.PHONY: unit
unit: unit-python unit-java ## Unit tests of Python and Java (start nothing)

.PHONY: unit-python unit-java
unit-python: venv
	$(VENV)/bin/pytest -q tests/unit
unit-java:
	cd transforms && mvn -B -q package
	cd connectors/dialect && mvn -B -q package

.PHONY: monitoring-check
monitoring-check: engine ## Prometheus config, alert rule unit tests and Alertmanager routes (promtool, amtool in the monitoring image)
	$(COMPOSE) build -q prometheus
	@$(WITH_ENV) docker run --rm --user "$$(id -u):$$(id -g)" \
	  -v "$(CURDIR)/monitoring:/monitoring:ro" conveyor/monitoring:dev /monitoring/check.sh

.PHONY: itest
itest: venv images ## Integration tests against the real stack in containers
	@$(WITH_ENV) $(PY) -m devstack.stack preflight
	@$(WITH_ENV) $(VENV)/bin/pytest -q --durations=10 --durations-min=5 tests/integration

.PHONY: test
# The unit tests need no containers and the image builds mostly wait on the network and the
# disk: run them side by side (each one's output printed whole when it ends), then the rest.
test: ## Every test: unit tests (beside the image builds), the monitoring checks, then integration tests
	@$(MAKE) --no-print-directory -j3 --output-sync=target unit-python unit-java images
	@$(MAKE) --no-print-directory monitoring-check itest

.PHONY: bench
bench: venv up ## Benchmarks vs baselines from the same run (BENCH="rabbitmq snowplow connect cdc reconcile sla", BENCH_ARGS="--rows N")
	@$(WITH_ENV) $(PY) -m bench $(BENCH) $(if $(BENCH_ARGS),-- $(BENCH_ARGS))
