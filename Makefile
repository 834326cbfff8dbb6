# Two commands do all set-up on a fresh machine (see README):
#   make demo   - build the virtualenv if needed, bring the whole stack up on the simulated
#                 robot and run a short, narrated agent session against it (fails if a call fails)
#   make test   - build the virtualenv if needed and run the test suite
# ROS_DISTRO=kilted (default) | jazzy picks the ROS 2 wheels; each distribution has its own
# virtualenv (.venv for kilted, .venv-jazzy) pinned by constraints.txt (shared, non-ROS) plus
# constraints-$(ROS_DISTRO).txt.
# Other targets: make test-all (what CI runs: lint, then the suite on every distribution),
# make lint (ruff on every file), make colcon (Debian's colcon for the robot build path
# test), make serve (MCP over HTTP on the
# simulated robot, prints client configs), make bench, make clean.

PYTHON ?= python3.11
ROS_DISTRO ?= kilted
DISTROS := kilted jazzy
ifeq ($(filter $(ROS_DISTRO),$(DISTROS)),)
$(error ROS_DISTRO=$(ROS_DISTRO): choose one of $(DISTROS))
endif
VENV_kilted := .venv
VENV_jazzy := .venv-jazzy
VENV := $(VENV_$(ROS_DISTRO))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := -c constraints.txt -c constraints-$(ROS_DISTRO).txt
CONFIG ?= config/sim_robot.yaml
PYTEST_ARGS ?=

.PHONY: demo serve test test-all lint bench clean venv browser colcon

venv: $(STAMP)

$(STAMP): constraints.txt constraints-$(ROS_DISTRO).txt requirements-ros.txt setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (the ROS 2 wheels on PyPI are built for CPython 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) -r requirements-ros.txt
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m skill_lanes_sim.demo --config $(CONFIG)

serve: $(STAMP)
	$(PY) -m skill_lanes_sim.demo --config $(CONFIG) --serve

test: $(STAMP) browser colcon node_modules/.package-lock.json
	$(PY) -m pytest test $(PYTEST_ARGS)

# CI: the linter once, then the whole suite on each distribution, one after the other.
test-all: lint
	$(MAKE) test ROS_DISTRO=kilted
	$(MAKE) test ROS_DISTRO=jazzy

lint: $(STAMP)
	$(PY) -m ruff check .

# The lane view's browser test needs Debian's headless Chromium and its driver: installed
# here when absent and running as root (CI); otherwise that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo 'installing chromium + chromium-driver (lane view browser test)'; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver >/dev/null || echo 'chromium not installed: test will skip'; \
	else echo 'no chromium and not root: the lane view browser test will skip'; fi

# The robot build path test (test/test_colcon_build.py) builds the package with colcon as a
# robot does: Debian's colcon and python3-colcon-ros, installed here when absent and running
# as root (CI); otherwise that test skips and says why.
colcon:
	@if command -v colcon >/dev/null && [ -d /usr/lib/python3/dist-packages/colcon_ros ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo 'installing colcon + python3-colcon-ros (robot build path test)'; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    colcon python3-colcon-ros >/dev/null || echo 'colcon not installed: test will skip'; \
	else echo 'no colcon and not root: the colcon build test will skip'; fi

# The official MCP TypeScript SDK client the tests drive the gateway with (pinned by the lock).
node_modules/.package-lock.json: package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund; \
	else echo "npm not found: the TypeScript client tests will be skipped"; fi

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV_kilted) $(VENV_jazzy) $(UNITY_VENV) *.egg-info .pytest_cache .hypothesis .ruff_cache

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
