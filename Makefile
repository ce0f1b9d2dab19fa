# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
LEDGER := $(VENV)/bin/ledger
PYTEST_ARGS ?=

.PHONY: run test setup system venv node chain-up chain-down deploy compile bench clean

setup: system venv node

# Debian packages (chromium, poppler-utils): apt-get, only when missing.
system:
	bash scripts/install_system_deps.sh

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	# npm install, not npm ci: npm 11 leaves other platforms' optional anvil builds out of the
	# lock file, which npm ci then rejects. Versions are pinned exactly in package.json.
	npm install --no-audit --no-fund --loglevel=error
	touch $@

chain-up: setup
	$(LEDGER) chain up

chain-down:
	$(LEDGER) chain down

deploy: chain-up
	$(LEDGER) deploy

# Serve the API and pages on 127.0.0.1:8000 with SQLite, the local anvil and deployed contracts.
run: deploy
	$(LEDGER) serve

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

compile: setup
	$(PY) scripts/compile_contracts.py

bench: setup
	$(PY) scripts/bench_log.py

clean:
	-$(LEDGER) chain down
	rm -rf $(VENV) node_modules
