# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# Locked, hashed dependencies (requirements/*.txt, made by `make lock`); then the project
# itself without resolving anything again.
APP_LOCK := requirements/app.txt
DEV_LOCK := requirements/dev.txt
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"

.PHONY: run test install install-dev migrate lint bench fuzz clean lock eval

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(APP_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .

# Re-resolve the locks from pyproject.toml, keeping every pin that still fits;
# `make lock UPGRADE=--upgrade` moves every pin to the newest allowed release,
# `make lock UPGRADE='--upgrade-package litellm'` one package.
lock: install-dev
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(UPGRADE) -o $(DEV_LOCK)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -c $(DEV_LOCK) -o $(APP_LOCK)

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
	$(BIN)/pytest -n 2 --dist loadfile

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

# The offline demo model on its labelled chat corpus: accuracy per agent, tool and
# language, the held-out set on its own line, and the time per message.
eval: install-dev
	$(BIN)/python -m tests.chat.evaluate
