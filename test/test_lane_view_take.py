"""The lane view's take-over buttons (`POST /lanes/<lane>/take|give_back`): offered only
with gateway.operator_tools, guarded like the stop button plus the operator token (header
X-Skill-Lanes-Operator, env var gateway.operator_token_env); the hello event says whether
the page shows them. The action itself (the lane manager's services) is tested in
test_gateway_take.py and test_operator_take.py.
"""
from __future__ import annotations

import json

import pytest

from mcp_gateway.lane_view import LaneView, security_settings
from test_lane_view import ServedView

TOKEN = 'lane-view-take-token'
ENV = 'SKILL_LANES_OPERATOR_TOKEN_VIEW_TEST'
BUTTON = {'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json',
          'X-Skill-Lanes': '1'}


class Served(ServedView):
    def __init__(self, with_operator: bool) -> None:
        self.actions: list[tuple[str, str]] = []

        async def stop(lane: str) -> dict:
            return {'ok': True, 'message': 'stopped'}

        async def operator(verb: str, lane: str) -> dict:
            self.actions.append((verb, lane))
            return {'ok': True, 'message': f'{verb} {lane}'}

        view = LaneView(lambda: {'lanes': {}}, ['arm'], stop, TOKEN,
                        security_settings('127.0.0.1'),
                        operator if with_operator else None, ENV)
        self.hello = view._hello()
        super().__init__(view)

    def post(self, path: str, headers: dict) -> tuple[int, dict]:
        status, _, body = self.request('POST', path, headers, b'{}')
        return status, json.loads(body)


@pytest.fixture
def served(request):
    app = Served(request.param)
    try:
        yield app
    finally:
        app.close()


@pytest.mark.parametrize('served', [True], indirect=True)
def test_take_buttons_need_the_operator_token(served, monkeypatch):
    assert served.hello['can_take'] is True
    monkeypatch.delenv(ENV, raising=False)
    status, body = served.post('/lanes/arm/take', BUTTON)
    assert status == 403 and body['error'] == 'operator_token' and ENV in body['message']
    monkeypatch.setenv(ENV, 'op-secret')
    status, body = served.post('/lanes/arm/take', {**BUTTON, 'X-Skill-Lanes-Operator': 'no'})
    assert status == 403 and body['error'] == 'operator_token'
    status, body = served.post('/lanes/arm/take', {
        k: v for k, v in BUTTON.items() if k != 'X-Skill-Lanes'} | {
        'X-Skill-Lanes-Operator': 'op-secret'})
    assert status == 403 and body['error'] == 'forbidden'
    assert served.actions == []
    ok = {**BUTTON, 'X-Skill-Lanes-Operator': 'op-secret'}
    status, body = served.post('/lanes/nolane/take', ok)
    assert status == 404
    status, body = served.post('/lanes/arm/take', ok)
    assert status == 200 and body == {'lane': 'arm', 'ok': True, 'message': 'take arm'}
    status, body = served.post('/lanes/arm/give_back', ok)
    assert status == 200 and body['message'] == 'give_back arm'
    assert served.actions == [('take', 'arm'), ('give_back', 'arm')]


@pytest.mark.parametrize('served', [False], indirect=True)
def test_without_operator_tools_there_are_no_take_buttons(served, monkeypatch):
    monkeypatch.setenv(ENV, 'op-secret')
    assert served.hello['can_take'] is False
    status, body = served.post('/lanes/arm/take', {**BUTTON, 'X-Skill-Lanes-Operator':
                                                   'op-secret'})
    assert status == 403 and body['error'] == 'read_only'
    assert served.actions == []


