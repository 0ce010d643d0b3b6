# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev migrate lint bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

migrate: install
	$(BIN)/alembic upgrade head

# Serve on the embedded defaults: SQLite under ./data, local blobs, embedded Qdrant,
# the offline `demo` LLM and the Stripe stub. Our middleware handles X-Forwarded-For
# (TRUSTED_PROXIES), so uvicorn's own proxy-header rewriting is off; `adiuva serve` is
# uvicorn with the graceful shutdown of app/server.py (streams get a last frame on SIGTERM).
run: migrate
	$(BIN)/adiuva serve --host $(HOST) --port $(PORT)

# The whole suite, on SQLite and on a PostgreSQL server the tests start themselves.
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) data .pytest_cache

# Every benchmark, each as a ratio against a baseline measured in the same run.
bench: install-dev
	$(BIN)/python -m bench

# A deeper fuzzing profile than the one in `make test`.
fuzz: install-dev
	FUZZ_EXAMPLES=200 $(BIN)/pytest tests/test_fuzz.py -p no:randomly
