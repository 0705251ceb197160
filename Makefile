# Developer entry points. `make` alone lists them.
VENV := .venv
PY := $(VENV)/bin/python
APP := $(VENV)/bin/checkin-offers
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup venv run test bench lint check migration openapi clean distclean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## venv + deps, PostgreSQL/PostGIS and Redis ready (idempotent)
	@scripts/setup.sh

# lint, check and openapi need no database: only the venv part of setup.
venv:
	@scripts/setup.sh --python-only

run: setup ## migrate, seed demo data with a few days of activity, serve on HOST:PORT (default 127.0.0.1:8000)
	$(APP) migrate
	$(APP) seed-demo --with-activity --base-url http://$(HOST):$(PORT)
	@echo "API docs: http://$(HOST):$(PORT)/docs"
	@echo "Console:  http://$(HOST):$(PORT)/dashboard/ (sign in with a token, or one click as a demo persona)"
	$(APP) serve --host $(HOST) --port $(PORT)

test: ## set up (Chromium included) and run the test suite (extra pytest args: make test PYTEST_ARGS='-k geo -x')
	@scripts/setup.sh --tests
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup ## run the benchmark
	$(PY) -m bench

lint: venv ## ruff: lint rules and formatting (read-only)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check: lint ## lint + mypy in strict mode: what CI runs before the tests
	$(VENV)/bin/mypy

migration: venv ## a migration for the changed migrations/sql/functions/*.sql: make migration m="why"
	@test -n "$(m)" || { echo 'say why: make migration m="..."' >&2; exit 2; }
	$(APP) function-revision -m "$(m)"

openapi: venv ## write openapi.json
	$(APP) openapi > openapi.json.tmp && mv openapi.json.tmp openapi.json

clean: ## remove caches and build leftovers (keeps .venv)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info

distclean: clean ## also remove .venv
	rm -rf $(VENV)
