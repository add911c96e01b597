# smki: the two commands of the README's Quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup demo test test-sqlite test-postgres lint bench clean

$(STAMP): pyproject.toml
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	bash scripts/demo.sh

# The whole suite, on SQLite and then on PostgreSQL (started or installed if none answers).
test: setup lint
	$(BIN)/pytest -n 2 -q
	bash scripts/with-postgres.sh $(BIN)/pytest -n 2 -q

test-sqlite: setup
	$(BIN)/pytest -n 2 -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/smki bench issue --count 10000 --count 100000 --backend file --backend pkcs11

clean:
	rm -rf $(VENV) smki-data
