"""The names of the gateway's own tools: one place, owned by the gateway.

A skill is an MCP tool named as the skill, so no skill may take one of these names
(`check_skill_names`, run when the gateway loads its config; the lane manager does not care
what a skill is called). Pure Python.
"""
from __future__ import annotations

from skill_lanes.config import Config, ConfigError

BUILTIN_TOOL_NAMES = frozenset({'lanes_status', 'lane_stop', 'lane_release', 'skill_start',
                                'skill_status', 'skill_cancel'})
# Offered with gateway.operator_tools, guarded by server.operator_refusal.
OPERATOR_TOOL_NAMES = frozenset({'lane_take', 'lane_give_back', 'goal_approve', 'goal_deny'})
UNITY_TOOL_NAMES = frozenset({'unity_refresh', 'unity_run_tests', 'unity_instances'})
GATEWAY_TOOL_NAMES = BUILTIN_TOOL_NAMES | OPERATOR_TOOL_NAMES | UNITY_TOOL_NAMES


def check_skill_names(config: Config, source: str) -> None:
    """Raise ConfigError (one line naming file and key) for a skill named as a gateway tool."""
    for name in config.skills:
        if name in GATEWAY_TOOL_NAMES:
            raise ConfigError(f'{source}: skills.{name}: {name!r} is reserved for a gateway '
                              'tool (a skill is a tool named as the skill)')
