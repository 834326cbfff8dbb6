"""Configuring a multi-lane skill (`lanes: [...]`) and what its MCP tool says about it."""
from __future__ import annotations

import pytest
import test_msgs.action as actions

from lane_manager.config import ConfigError, LaneConfig, SkillConfig, parse_config
from mcp_gateway.tool_defs import skill_tool

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
    assert multi.meta['lanes'] == ['base', 'arm'] and 'lane' not in multi.meta
    assert multi.meta['skill_lanes/policies'] == ['queue', 'reject']
    assert "lanes 'base', 'arm' at once" in multi.description
    single = skill_tool('drive', SkillConfig(lane='base', action_type=FIB, driver='/b'),
                        [LaneConfig()], {'type': 'object'}, actions.Fibonacci.Result)
    assert single.meta['lanes'] == ['base'] and single.meta['lane'] == 'base'
    free = skill_tool('look', SkillConfig(action_type=FIB, driver='/c'), [],
                      {'type': 'object'}, actions.Fibonacci.Result)
    assert free.meta['lanes'] == [] and 'lane' not in free.meta
