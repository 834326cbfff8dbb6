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
    packages=['lane_manager', 'mcp_gateway'],
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml')),
    ],
    python_requires='>=3.10',
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
        # The ROS message wheels: real robot types for the schema tests and the schema-size
        # bench (pinned in constraints.txt; on a robot they come from the ROS install).
        'test': ['pytest', 'hypothesis', 'psutil', 'ros-trajectory-msgs', 'ros-nav-msgs',
                 'ros-sensor-msgs', 'ros-visualization-msgs'],
    },
    zip_safe=True,
    maintainer='skill_lanes maintainers',
    maintainer_email='maintainers@skill-lanes.invalid',
    description='Lane arbitration for robot skills and an MCP gateway for LLM agents.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'lane_manager = lane_manager.node:main',
            'sim_driver = lane_manager.sim_driver:main',
            'mcp_gateway = mcp_gateway.main:main',
            'skill_lanes_demo = mcp_gateway.demo:main',
        ],
    },
)
