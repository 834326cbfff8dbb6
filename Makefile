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

.PHONY: demo serve test bench clean venv browser

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

test: $(STAMP) browser
	$(PY) -m pytest test

# The lane view's browser test needs Debian's headless Chromium and its driver: installed
# here when absent and running as root (CI); otherwise that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo 'installing chromium + chromium-driver (lane view browser test)'; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null || echo 'chromium not installed: test will skip'; \
	else echo 'no chromium and not root: the lane view browser test will skip'; fi

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis

# --- Unity (HTTP mode tests): the official MCP for Unity server in its own venv -----------
# mcpforunityserver pins mcp 1.x (via fastmcp 3); our gateway needs mcp 2.x. The tests run
# the server from .venv-unity as a separate process, as it runs next to a real Editor.
UNITY_VENV := .venv-unity
UNITY_STAMP := $(UNITY_VENV)/.installed

.PHONY: unity-venv
unity-venv: $(UNITY_STAMP)

$(UNITY_STAMP): unity-constraints.txt
	$(PYTHON) -m venv $(UNITY_VENV)
	$(UNITY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(UNITY_VENV)/bin/python -m pip install --quiet -c unity-constraints.txt mcpforunityserver
	touch $(UNITY_STAMP)

# `make test` (what CI runs) includes the HTTP-mode tests against the real server.
test: $(UNITY_STAMP)
