# Two commands do all set-up on a fresh machine (see README):
#   make demo   - build the virtualenv if needed, bring the whole stack up on the simulated
#                 robot and run a short, narrated agent session against it
#   make test   - build the virtualenv if needed and run the test suite (what CI runs)
# Other targets: make serve (MCP over HTTP on the simulated robot), make bench, make clean.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= config/sim_robot.yaml

.PHONY: demo serve test bench clean venv

venv: $(STAMP)

$(STAMP): constraints.txt requirements-ros.txt setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (the ROS 2 Kilted wheels are built for CPython 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-ros.txt
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mcp_gateway.demo --config $(CONFIG)

serve: $(STAMP)
	$(PY) -m mcp_gateway.demo --config $(CONFIG) --serve

test: $(STAMP) node_modules/.package-lock.json
	$(PY) -m pytest test

# The official MCP TypeScript SDK client the tests drive the gateway with (pinned by the lock).
node_modules/.package-lock.json: package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund; \
	else echo "npm not found: the TypeScript client tests will be skipped"; fi

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
