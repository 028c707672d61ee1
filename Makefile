# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 6001
# Django's secret key for this checkout, made once by `make run` (DEBUG stays off, and the public
# development key is refused then). Production sets DJANGO_SECRET_KEY, the same on every node.
SECRET_KEY_FILE ?= .secret_key
DJANGO_SECRET_KEY_FILE := $(abspath $(SECRET_KEY_FILE))
export HOST PORT DJANGO_SECRET_KEY_FILE

.PHONY: run test test-postgres test-stock install lint format migrate secret-key clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

$(SECRET_KEY_FILE): | $(BIN)/python
	@umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@.tmp && mv $@.tmp $@
	@echo "Wrote a random Django secret key to $@ (kept for this checkout; not for production)"

secret-key: $(SECRET_KEY_FILE)

migrate: install $(SECRET_KEY_FILE)
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
	rm -rf $(VENV) db.sqlite3 .pytest_cache $(SECRET_KEY_FILE)
