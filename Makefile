# Two commands do all set-up: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench lint clean screenshots packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local,dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/operator-comms run

# Tests need two Debian packages, installed once when missing: chromium for the browser
# tests (driven through Playwright, no browser download) and dovecot-imapd for the
# signup mailbox (started by the tests with their own config; no system service used).
packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -x /usr/sbin/dovecot ] || missing="$$missing dovecot-imapd"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: $(STAMP) packages
	$(BIN)/python -m pytest

screenshots: $(STAMP) packages
	COMMS_SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest tests/browser -q

# All benchmarks, about 20 minutes on a 2-core machine; results in benchmarks/results.
# (2,000 messages per point keeps the ten scaling runs inside that budget.)
bench: $(STAMP)
	$(BIN)/python -m benchmarks.scaling --messages 2000
	$(BIN)/python -m benchmarks.chat_load
	$(BIN)/python -m benchmarks.marketing_timers
	$(BIN)/python -m benchmarks.reports

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
