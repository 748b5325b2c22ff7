# The first two commands on a fresh machine: `make demo` and `make test`.
# Each bootstraps .venv (Python 3.11+) with every extra the tests need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration e2e bench bench-quick bench-operator bench-node bench-chaos \
        cluster-up cluster-down k8s-binaries kind-up kind-down images crds chart-crds crd-reference clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jobworker needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,operator,qstash,uvloop]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# pytest exits 5 when it collects nothing (say, a PYTEST_ARGS filter that matches no test):
# fine locally, a failure in CI, where a run that proves nothing must not pass.
test: lint typecheck
	@rc=0; $(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then \
	  echo "pytest collected no tests"; \
	  if [ -n "$$CI" ]; then exit 1; else exit 0; fi; \
	fi; exit $$rc

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

e2e: $(STAMP)
	$(PY) -m pytest -q tests/e2e

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

bench-operator: $(STAMP)
	$(PY) bench/run.py --operator

# The chaos suite's long form (the short one runs in `make test`); writes its table into bench/README.md.
bench-chaos: $(STAMP)
	$(PY) bench/chaos.py

# A pool on the real local node: kubectl apply -> first job, and a spec change's rollout (needs root).
bench-node: $(STAMP) k8s-binaries
	$(PY) bench/node_bench.py

# The bin directory goes to /dev/null: `eval "$(make -s cluster-up)"` reads only cluster-up's exports.
k8s-binaries:
	hack/build-k8s.sh >/dev/null

cluster-up: $(STAMP) k8s-binaries
	hack/cluster-up.sh

cluster-down: $(STAMP)
	hack/cluster-down.sh

kind-up: $(STAMP)
	hack/kind-up.sh

kind-down:
	kind delete cluster --name jobworker

# jobworker:dev, jobworker-operator:dev and the example app jobworker-example:dev (examples/Dockerfile): with
# docker where an engine runs, else with buildah on a base
# built from Debian packages (no registry). Cached by their inputs; see docs/images.md.
images:
	$(PYTHON) hack/cluster.py images

# crds/jobworkerpools.yaml and the chart's copy from operator/crd/*.template.yaml and model.py's defaults,
# then the reference docs (tests fail when any of them is stale).
crds: $(STAMP)
	$(PY) scripts/gen_crd.py
	$(PY) scripts/gen_crd_reference.py

chart-crds: crds
	scripts/sync_chart_crds.sh

crd-reference: crds

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
