"""The package layout is the architecture: imports go one way.

- `skill_lanes`: what both nodes share (config, names, goal vocabulary and ids, typed lane
  state, limits, runtime, rclpy guard, action links, SROS2 policy): imports neither node;
- `lane_manager` and `mcp_gateway`: each imports `skill_lanes`, never the other;
- `skill_lanes_sim` (simulated robot, demo, process plumbing) may use all three; no product
  package imports it.
Checked on the source (every import statement, also inside functions), so a shortcut that
would tie the nodes together fails here first.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ('skill_lanes', 'lane_manager', 'mcp_gateway', 'skill_lanes_sim')
MAY_NOT_IMPORT = {
    'skill_lanes': {'lane_manager', 'mcp_gateway', 'skill_lanes_sim'},
    'lane_manager': {'mcp_gateway', 'skill_lanes_sim'},
    'mcp_gateway': {'lane_manager', 'skill_lanes_sim'},
    'skill_lanes_sim': set(),
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split('.')[0])
    return names


@pytest.mark.parametrize('package', PACKAGES)
def test_imports_go_one_way(package):
    files = sorted((ROOT / package).rglob('*.py'))
    assert files, f'{package}/ has no modules'
    wrong = {f'{path.relative_to(ROOT)} imports {name}'
             for path in files for name in imported_packages(path) & MAY_NOT_IMPORT[package]}
    assert not wrong, sorted(wrong)


def test_every_package_is_installed():
    setup = (ROOT / 'setup.py').read_text()
    for package in PACKAGES:
        assert f"'{package}'" in setup, f'setup.py does not install {package}'
