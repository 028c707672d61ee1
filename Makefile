# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 6001
export HOST PORT

.PHONY: run test test-postgres test-stock install lint format migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/python manage.py migrate --no-input -v 0

run: migrate
	$(BIN)/python manage.py ensure_default_app
	@echo "WebSocket: ws://$(HOST):$(PORT)/app/<key>   HTTP API: http://$(HOST):$(PORT)/apps/<app_id>/events   Admin: http://$(HOST):$(PORT)/admin/"
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite with every test server's apps in PostgreSQL (a fresh database per server).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
test-postgres: install
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The interop suite on the stock transport: daphne and Django's handler without the fast paths.
test-stock: install
	SERVER_FAST_PATHS=false $(BIN)/python -m pytest tests/interop $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
