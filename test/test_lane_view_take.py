"""The lane view's take-over buttons (`POST /lanes/<lane>/take|give_back`): offered only
with gateway.operator_tools, guarded like the stop button plus the operator token (header
X-Skill-Lanes-Operator, env var gateway.operator_token_env); the hello event says whether
the page shows them. The action itself (the lane manager's services) is tested in
test_gateway_take.py and test_operator_take.py.
"""
from __future__ import annotations

import http.client
import json
import threading

import pytest

from mcp_gateway.lane_view import LaneView, _Dispatch, security_settings
from support import wait_until
from test_gateway import free_port

TOKEN = 'lane-view-take-token'
ENV = 'SKILL_LANES_OPERATOR_TOKEN_VIEW_TEST'
BUTTON = {'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json',
          'X-Skill-Lanes': '1'}


class Served:
    def __init__(self, with_operator: bool) -> None:
        import uvicorn
        self.actions: list[tuple[str, str]] = []

        async def stop(lane: str) -> dict:
            return {'ok': True, 'message': 'stopped'}

        async def operator(verb: str, lane: str) -> dict:
            self.actions.append((verb, lane))
            return {'ok': True, 'message': f'{verb} {lane}'}

        async def other(scope, receive, send):
            if scope['type'] == 'http':
                await send({'type': 'http.response.start', 'status': 404, 'headers': []})
                await send({'type': 'http.response.body', 'body': b''})

        view = LaneView(lambda: {'lanes': {}}, ['arm'], stop, TOKEN,
                        security_settings('127.0.0.1'),
                        operator if with_operator else None, ENV)
        self.hello = view._hello()
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(
            _Dispatch(view, other), host='127.0.0.1', port=self.port, log_level='warning',
            lifespan='off'))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 20, what='uvicorn to listen')

    def post(self, path: str, headers: dict) -> tuple[int, dict]:
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        try:
            conn.request('POST', path, body=b'{}', headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


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


