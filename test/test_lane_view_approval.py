"""The lane view's approval buttons (`POST /lanes/<lane>/goals/<goal_id>/approve|deny`):
offered with gateway.operator_tools, guarded like the take-over buttons (the view's token,
header X-Skill-Lanes: 1, and the operator token). The decision itself (the goal_approve /
goal_deny tools, the lane manager) is tested in test_gateway_approval.py, through a real
HTTP gateway, and test_approval_processes.py.
"""
from __future__ import annotations

import pytest

from test_lane_view_take import BUTTON, ENV, Served


@pytest.fixture
def served(request):
    app = Served(request.param)
    try:
        yield app
    finally:
        app.close()


@pytest.mark.parametrize('served', [True], indirect=True)
def test_approve_and_deny_buttons_need_the_operator_token(served, monkeypatch):
    monkeypatch.setenv(ENV, 'op-secret')
    status, body = served.post('/lanes/arm/goals/g1/approve', BUTTON)
    assert status == 403 and body['error'] == 'operator_token'
    no_header = {k: v for k, v in BUTTON.items() if k != 'X-Skill-Lanes'}
    status, body = served.post('/lanes/arm/goals/g1/deny',
                               {**no_header, 'X-Skill-Lanes-Operator': 'op-secret'})
    assert status == 403 and body['error'] == 'forbidden'
    assert served.actions == []
    ok = {**BUTTON, 'X-Skill-Lanes-Operator': 'op-secret'}
    assert served.post('/lanes/nolane/goals/g1/approve', ok)[0] == 404
    status, body = served.post('/lanes/arm/goals/g1/approve', ok)
    assert status == 200 and body == {'lane': 'arm', 'goal_id': 'g1', 'ok': True,
                                      'message': 'approve g1'}
    status, body = served.post('/lanes/arm/goals/g2/deny', ok)
    assert status == 200 and body['goal_id'] == 'g2'
    assert served.actions == [('approve', 'g1'), ('deny', 'g2')]


@pytest.mark.parametrize('served', [False], indirect=True)
def test_without_operator_tools_there_are_no_approval_buttons(served, monkeypatch):
    monkeypatch.setenv(ENV, 'op-secret')
    status, body = served.post('/lanes/arm/goals/g1/approve',
                               {**BUTTON, 'X-Skill-Lanes-Operator': 'op-secret'})
    assert status == 403 and body['error'] == 'read_only'
    assert served.actions == []
