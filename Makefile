# The two set-up commands: `make run` (the dashboard on SQLite with the sample state)
# and `make test` (the whole suite). Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test test-pg bench bench-big screenshot lint check-deploy chromium qr-reader clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# run_dashboard: the sender loop, a STAND-IN gateway when none answers at api_endpoint,
# and the dashboard on http://127.0.0.1:8000; Ctrl-C stops all of them.
# `GATEWAY_KIND=waha make run` (or evolution, cloud): that gateway's STAND-IN, with demo
# values for its settings left empty. Settings are checked when Django starts (migrate
# already), so they must be in the environment before the first command.
ifneq ($(filter waha evolution cloud,$(GATEWAY_KIND)),)
run: export GATEWAY_URL := $(or $(GATEWAY_URL),http://127.0.0.1:3001)
run: export GATEWAY_API_KEY := $(or $(GATEWAY_API_KEY),demo)
run: export GATEWAY_WEBHOOK_SECRET := $(or $(GATEWAY_WEBHOOK_SECRET),demo-secret)
ifeq ($(GATEWAY_KIND),cloud)
run: export GATEWAY_PHONE_NUMBER_ID := $(or $(GATEWAY_PHONE_NUMBER_ID),106540352242922)
run: export GATEWAY_VERIFY_TOKEN := $(or $(GATEWAY_VERIFY_TOKEN),demo-verify-token)
endif
endif
run: venv
	DEBUG=1 $(PY) manage.py migrate --no-input
	DEBUG=1 $(PY) manage.py bootstrap_demo
	DEBUG=1 $(PY) manage.py run_dashboard

# Browser tests need Debian's Chromium: installed here when we are root, otherwise
# we stop and say how (a test is never skipped for want of it).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Chromium at $(CHROMIUM). Install it with:"; \
		echo "    sudo apt-get install chromium"; \
		exit 1; \
	fi

# The session page's browser test reads the drawn QR back with Debian's zbar-tools
# (zbarimg): installed here when we are root, otherwise we stop and say how.
qr-reader:
	@if command -v zbarimg >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's zbar-tools (zbarimg) for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zbar-tools >/dev/null; \
	else \
		echo "The browser tests read QR codes back with zbarimg. Install it with:"; \
		echo "    sudo apt-get install -y zbar-tools"; \
		exit 1; \
	fi

test: venv chromium qr-reader
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) -m tests.benchmarks.run

# Every page, every search and the import at 1,000,000 messages, on SQLite and on the
# PostgreSQL of DATABASE_URL (README "At a million messages"); about 20 minutes, the
# state file generated once into bench-cache/ (or BENCH_CACHE). A quick try:
# `make bench-big BENCH_ARGS="--only sqlite --size 100000"`.
bench-big: venv
	$(PY) -m tests.benchmarks.bench_big $(BENCH_ARGS)

screenshot: venv chromium
	$(PY) -m tests.browser.screenshot docs/queue.png

check-deploy: venv
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') DEBUG=0 \
		ALLOWED_HOSTS=dashboard.example.com $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) .test-db*.sqlite3* staticfiles
