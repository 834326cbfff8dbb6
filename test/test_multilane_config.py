"""Configuring a multi-lane skill (`lanes: [...]`) and what its MCP tool says about it."""
from __future__ import annotations

import re

import pytest
import test_msgs.action as actions

from skill_lanes.config import ConfigError, LaneConfig, SkillConfig, parse_config
from mcp_gateway.tool_defs import (LEGACY_META_PREFIX, META_PREFIX, UNPREFIXED_META,
                                   skill_tool)

LANES = {'base': {}, 'arm': {'policy': 'reject'}}
FIB = 'test_msgs/action/Fibonacci'


@pytest.mark.parametrize('skill, expected', [
    ({'lane': 'base', 'lanes': ['base', 'arm']}, 'skills.x: give either lane'),
    ({'lanes': ['base', 'nope']}, "skills.x.lanes: unknown lane 'nope'"),
    ({'lanes': ['arm', 'arm']}, 'names a lane twice'),
    ({'lanes': []}, 'skills.x.lanes: List should have at least 1 item'),
])
def test_bad_lanes_are_one_clear_error(skill, expected):
    data = {'lanes': LANES, 'skills': {'x': {**skill, 'action_type': FIB, 'driver': '/a'}}}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert expected in str(err.value)


def test_lanes_and_lane_read_alike():
    config = parse_config({'lanes': LANES, 'skills': {
        'fetch': {'lanes': ['base', 'arm'], 'action_type': FIB, 'driver': '/a'},
        'drive': {'lane': 'base', 'action_type': FIB, 'driver': '/b'},
        'look': {'action_type': FIB, 'driver': '/c'}}})
    fetch, drive, look = (config.skills[n] for n in ('fetch', 'drive', 'look'))
    assert fetch.all_lanes == ('base', 'arm') and fetch.primary_lane == 'base'
    assert drive.all_lanes == ('base',) and drive.primary_lane == 'base'
    assert look.all_lanes == () and look.primary_lane is None


def test_meta_carries_every_lane_and_keeps_lane_for_single_lane_skills():
    multi = skill_tool('fetch', SkillConfig(lanes=['base', 'arm'], action_type=FIB,
                                            driver='/a'),
                       [LaneConfig(), LaneConfig(policy='reject')], {'type': 'object'},
                       actions.Fibonacci.Result)
    for prefix in ('skill-lanes/', ''):  # the project's prefix, and unprefixed as before
        assert multi.meta[prefix + 'lanes'] == ['base', 'arm']
        assert prefix + 'lane' not in multi.meta
    for prefix in ('skill-lanes/', 'skill_lanes/'):  # and as earlier releases spelled it
        assert multi.meta[prefix + 'policies'] == ['queue', 'reject']
    assert "lanes 'base', 'arm' at once" in multi.description
    single = skill_tool('drive', SkillConfig(lane='base', action_type=FIB, driver='/b'),
                        [LaneConfig()], {'type': 'object'}, actions.Fibonacci.Result)
    free = skill_tool('look', SkillConfig(action_type=FIB, driver='/c'), [],
                      {'type': 'object'}, actions.Fibonacci.Result)
    for prefix in ('skill-lanes/', ''):
        assert single.meta[prefix + 'lanes'] == ['base'] and single.meta[prefix + 'lane'] == 'base'
        assert free.meta[prefix + 'lanes'] == [] and prefix + 'lane' not in free.meta
    for prefix in ('skill-lanes/', 'skill_lanes/'):
        assert single.meta[prefix + 'policy'] == 'queue'
        assert single.meta[prefix + 'action_type'] == FIB


# The MCP spec's `_meta` key grammar (basic protocol, "General fields"): an optional prefix of
# dot-separated labels (a letter first, a letter or digit last, hyphens inside) and a slash;
# a name that, unless empty, starts and ends alphanumeric with `-`, `_`, `.` inside.
META_KEY = re.compile(r'^(?:[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?'
                      r'(?:\.[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*/)?'
                      r'(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?$')


def test_every_prefixed_meta_key_follows_the_spec_grammar_but_the_kept_old_ones():
    tools = [skill_tool('fetch', SkillConfig(lanes=['base', 'arm'], action_type=FIB,
                                             driver='/a'),
                        [LaneConfig(), LaneConfig(policy='reject')], {'type': 'object'},
                        actions.Fibonacci.Result),
             skill_tool('drive', SkillConfig(lane='base', action_type=FIB, driver='/b'),
                        [LaneConfig()], {'type': 'object'}, actions.Fibonacci.Result)]
    for tool in tools:
        prefixed = [key for key in tool.meta if '/' in key]
        ours = [key for key in prefixed if key.startswith(META_PREFIX)]
        assert ours and all(META_KEY.match(key) for key in ours), ours
        # what earlier releases published stays, so existing clients keep working
        assert all(key.startswith(LEGACY_META_PREFIX) for key in set(prefixed) - set(ours))
        unprefixed = {key for key in tool.meta if '/' not in key}
        assert unprefixed <= set(UNPREFIXED_META)
        for key, value in tool.meta.items():
            if not key.startswith(META_PREFIX):
                name = key.split('/', 1)[-1]
                assert tool.meta[META_PREFIX + name] == value, key
    assert not META_KEY.match('skill_lanes/lanes')  # why the old prefix is not enough
