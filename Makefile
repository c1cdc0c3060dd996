# Two commands do all set-up: `make run` and `make test`. Both create .venv when missing.
# `make check` is the fast tier (lint, import contracts, types, Ray-free tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test check contracts bench bench-audience lint clean screenshots packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local,dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/operator-comms run

# Tests need three Debian packages, installed once when missing: chromium for the browser
# tests (driven through Playwright, no browser download), dovecot-imapd for the signup
# mailbox and rabbitmq-server for the Celery peer of the scaling benchmark (both started
# by their users with their own config and data; no system service is used).
packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -x /usr/sbin/dovecot ] || missing="$$missing dovecot-imapd"; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Lint, import contracts and types, then every test (Ray, browser and minutes included).
test: $(STAMP) packages contracts
	$(BIN)/python -m pytest --durations=25

# The fast tier, under a minute: lint, import contracts, types and the tests that need
# no Ray, no browser and no minutes (a database or an SMTP sink of their own at most).
check: $(STAMP) contracts
	$(BIN)/python -m pytest -q -m "not ray and not browser and not slow"

contracts: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

screenshots: $(STAMP) packages
	COMMS_SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest tests/browser -q

# All benchmarks, under 45 minutes on a 2-core machine; results in benchmarks/results.
# The scaling run sizes each point to last at least 10 s, Celery and raw beside the app.
bench: $(STAMP) packages
	$(BIN)/python -m benchmarks.scaling
	$(BIN)/python -m benchmarks.chat_load
	$(BIN)/python -m benchmarks.marketing_timers
	$(BIN)/python -m benchmarks.reports
	$(BIN)/python -m benchmarks.webhooks
	$(BIN)/python -m benchmarks.tracing_cost

# A launch to 1,000,000 recipients: first message, runner memory (about 15 minutes,
# most of it seeding the customers).
bench-audience: $(STAMP)
	$(BIN)/python -m benchmarks.audience

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
