"""ament_python package skill_lanes: lane_manager + mcp_gateway.

The same setup.py serves colcon on a ROS 2 install (console scripts land in
lib/skill_lanes so `ros2 run skill_lanes <name>` finds them) and a plain virtualenv built from
the ROS 2 wheels on PyPI (see README).
"""
from glob import glob

from setuptools import setup

PACKAGE = 'skill_lanes'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=['skill_lanes', 'lane_manager', 'mcp_gateway', 'mcp_gateway.unity',
              'skill_lanes_sim'],
    package_data={'mcp_gateway': ['lane_view_static/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.xml')),
        (f'share/{PACKAGE}/config/sros2', glob('config/sros2/*.xml')),
    ],
    python_requires='>=3.11',
    install_requires=[
        'setuptools',
        'pydantic>=2.7',
        'pyyaml>=6',
        'jsonschema>=4.20',
        'mcp>=2.3,<3',
        'uvicorn>=0.30',
        'anyio>=4',
    ],
    extras_require={
        'test': ['pytest', 'hypothesis', 'psutil', 'selenium', 'ruff'],
        # No extra for the official MCP for Unity server (HTTP-mode tests): it needs mcp 1.x
        # (through fastmcp 3) and would downgrade our mcp 2.x. `make unity-venv` installs
        # it, pinned by unity-constraints.txt, into its own .venv-unity.
    },
    zip_safe=True,
    maintainer='skill_lanes maintainers',
    maintainer_email='maintainers@skill-lanes.invalid',
    description='Lane arbitration for robot skills and an MCP gateway for LLM agents.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'lane_manager = lane_manager.node:main',
            'sim_driver = skill_lanes_sim.sim_driver:main',
            'mcp_gateway = mcp_gateway.main:main',
            'skill_lanes_demo = skill_lanes_sim.demo:main',
            'skill_lanes_sros2_policy = skill_lanes.sros2_policy:main',
        ],
    },
)
