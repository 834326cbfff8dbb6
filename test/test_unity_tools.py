"""The Unity MCP tools through a real MCP client and server (in memory) and a fake Editor."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
import pytest
from mcp import Client
from mcp.server import Server

from fake_unity_editor import FakeUnityEditor
from mcp_gateway.unity.answers import UnityCommandError, error_answer
from mcp_gateway.unity.bridge import UnityBridge
from mcp_gateway.unity.config import UnityConfig
from mcp_gateway.unity.instances import Finder
from mcp_gateway.unity.lease import LeaseManager
from mcp_gateway.unity.tools import UnityTools


def make_server(tools: UnityTools) -> Server:
    """What the gateway does for these tools: list them, route calls, pass a reporter."""
    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools.tools())

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        async def report(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)
        return await tools.call(params.name, params.arguments or {}, report)

    return Server('unity-tools-test', on_list_tools=list_tools, on_call_tool=call_tool)


def connect(tools: UnityTools) -> Client:
    return Client(make_server(tools), mode='legacy')  # legacy: progress tokens flow


@pytest.fixture
def status_dir(tmp_path: Path) -> Path:
    return tmp_path / 'status'


@pytest.fixture
def config(tmp_path: Path, status_dir: Path) -> UnityConfig:
    return UnityConfig(enabled=True, status_dir=str(status_dir),
                       lease_dir=str(tmp_path / 'leases'), lease_ttl_s=2.0,
                       ready_wait_s=10.0, test_poll_s=0.05)


@pytest.fixture
def editor(status_dir: Path):
    with FakeUnityEditor(status_dir, 'Game', failing_tests=('Fake.Tests.Test3',),
                         test_duration_s=0.06, reload_duration_s=0.3,
                         status_interval_s=0.05) as fake:
        yield fake


_SCHEMAS = {tool.name: tool.output_schema
            for tool in UnityTools(UnityConfig(), 'schemas').tools()}


def structured(result: types.CallToolResult, tool: str | None = None) -> dict[str, Any]:
    """The body, checked against every Unity tool's outputSchema it could come from (the
    TypeScript client rejects a result that does not conform, error results included).
    """
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content
    body = result.structured_content
    operation = {'refresh_unity': 'unity_refresh', 'run_tests': 'unity_run_tests'}
    tool = tool or operation.get(body.get('operation')) or (
        'unity_instances' if 'instances' in body and body.get('success') else None)
    for name, schema in _SCHEMAS.items():
        if tool in (None, name):
            jsonschema.validate(body, schema)
    return body


def test_tools_are_listed_with_strict_schemas_and_annotations(config: UnityConfig) -> None:
    tools = UnityTools(config, 'gw')

    async def scenario() -> None:
        async with connect(tools) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(listed) == {'unity_refresh', 'unity_run_tests', 'unity_instances'}
        for tool in listed.values():
            assert tool.input_schema['additionalProperties'] is False
            assert tool.annotations is not None
        assert listed['unity_instances'].annotations.read_only_hint is True
        assert listed['unity_run_tests'].input_schema['properties']['filters'][
            'additionalProperties'] is False
    anyio.run(scenario)
    assert tools.handles('unity_refresh') and not tools.handles('lanes_status')


def test_refresh_with_compile_holds_the_lease_until_the_editor_is_ready(
        config: UnityConfig, editor: FakeUnityEditor) -> None:
    tools = UnityTools(config, 'gw')
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))
        if message and 'waiting' in message:
            # Still held while the Editor reloads.
            assert tools.leases.who_holds(editor.instance_id)['operation'] == 'refresh_unity'

    async def scenario() -> types.CallToolResult:
        async with connect(tools) as client:
            return await client.call_tool('unity_refresh', {'compile': 'request'},
                                          progress_callback=on_progress)
    result = anyio.run(scenario)
    body = structured(result)
    assert not result.is_error and body['success'] and body['reload_observed'] is True
    assert body['instance_id'] == editor.instance_id and body['lease_token'] > 0
    # The Editor answered at once and compiled later: the call (and the lease) ended only
    # after the reload that followed, with nothing left running in the Editor.
    assert editor.reloads == 1 and editor.commands.count('refresh_unity') == 1
    assert editor.max_active == 1 and editor._active == 0
    assert any('waiting' in (m or '') for _, _, m in progress)
    values = [value for value, _, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert tools.leases.who_holds(editor.instance_id) is None


def test_run_tests_reports_progress_and_the_failures(config: UnityConfig,
                                                     editor: FakeUnityEditor) -> None:
    tools = UnityTools(config, 'gw')
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def scenario() -> types.CallToolResult:
        async with connect(tools) as client:
            return await client.call_tool('unity_run_tests', {'mode': 'EditMode'},
                                          progress_callback=on_progress)
    result = anyio.run(scenario)
    body = structured(result)
    # As the Editor reports it: `failed` with `result: null`; the summary is rebuilt.
    assert result.is_error and body['success'] is False and body['error'] == 'tests_failed'
    assert body['status'] == 'failed' and body['summary']['source'] == 'rebuilt'
    assert body['summary']['total'] == 5 and body['summary']['failed'] == 1
    assert body['failures'][0]['full_name'] == 'Fake.Tests.Test3'
    assert body['failures'][0]['message'] == 'Expected 1 but was 2'
    assert any(total == 5 for _, total, _ in progress)
    assert any('running Fake.Tests.' in (message or '') for _, _, message in progress)
    assert [v for v, _, _ in progress] == sorted(v for v, _, _ in progress)
    assert max(v for v, _, _ in progress) >= 5
    assert tools.leases.who_holds(editor.instance_id) is None


def test_filters_reach_the_editor(config: UnityConfig, editor: FakeUnityEditor) -> None:
    tools = UnityTools(config, 'gw')

    async def scenario() -> types.CallToolResult:
        async with connect(tools) as client:
            return await client.call_tool('unity_run_tests', {
                'filters': {'test_names': ['Fake.Tests.Test0', 'Fake.Tests.Test1']}})
    body = structured(anyio.run(scenario))
    assert body['summary']['total'] == 2 and body['success'] is True


def test_busy_lease_answers_with_the_structured_busy_shape(config: UnityConfig,
                                                           editor: FakeUnityEditor) -> None:
    other_agent = LeaseManager(config.lease_dir)
    held = other_agent.acquire(editor.instance_id, 'other-agent', 'run_tests',
                               expected_duration_s=8)
    tools = UnityTools(config, 'gw')

    async def scenario() -> list[types.CallToolResult]:
        async with connect(tools) as client:
            return [await client.call_tool('unity_refresh', {}),
                    await client.call_tool('unity_run_tests', {}),
                    await client.call_tool('unity_instances', {})]
    refresh, tests, instances = anyio.run(scenario)
    for result in (refresh, tests):
        body = structured(result)
        assert result.is_error
        assert body['error'] == 'operation_busy' and body['hint'] == 'retry'
        data = body['data']
        assert data['reason'] == 'operation_busy' and data['owner'] == 'other-agent'
        assert data['operation'] == 'run_tests' and data['instance_id'] == editor.instance_id
        assert 7000 <= data['retry_after_ms'] <= 8000
    listed = structured(instances)['instances']
    assert listed[0]['lease']['owner'] == 'other-agent'
    assert editor.commands == []  # a busy caller never touches the Editor
    held.release()
    other_agent.close()


def test_concurrent_calls_on_one_session_never_overlap_in_the_editor(
        config: UnityConfig, editor: FakeUnityEditor) -> None:
    tools = UnityTools(config, 'gw')
    results: list[types.CallToolResult] = []

    async def scenario() -> None:
        async with connect(tools) as client:
            async def call(name: str, arguments: dict[str, Any]) -> None:
                results.append(await client.call_tool(name, arguments))
            async with anyio.create_task_group() as group:
                group.start_soon(call, 'unity_run_tests', {})
                for _ in range(3):
                    await anyio.sleep(0.05)
                    group.start_soon(call, 'unity_refresh', {'compile': 'request'})
    anyio.run(scenario)
    errors = sorted(structured(r)['error'] for r in results if r.is_error)
    assert errors == ['operation_busy'] * 3 + ['tests_failed']  # Test3 fails in the fixture
    assert editor.overlaps == 0


def test_cancelling_a_test_run_releases_the_lease(config: UnityConfig, status_dir: Path) -> None:
    with FakeUnityEditor(status_dir, 'Slow', test_duration_s=0.5,
                         status_interval_s=0.05) as editor:
        tools = UnityTools(config, 'gw')
        started = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            if total:
                started.set()

        async def scenario() -> None:
            async with connect(tools) as client:
                async with anyio.create_task_group() as group:
                    group.start_soon(lambda: client.call_tool(
                        'unity_run_tests', {}, progress_callback=on_progress))
                    with anyio.fail_after(10):
                        await started.wait()
                    assert tools.leases.who_holds(editor.instance_id) is not None
                    group.cancel_scope.cancel()
                with anyio.fail_after(2):
                    while tools.leases.who_holds(editor.instance_id) is not None:
                        await anyio.sleep(0.01)
        anyio.run(scenario)
        other = LeaseManager(config.lease_dir)
        assert other.try_acquire(editor.instance_id, 'next-agent', 'refresh_unity') is not None
        other.close()


def test_several_editors_without_instance_is_an_error_listing_them(
        config: UnityConfig, status_dir: Path) -> None:
    with FakeUnityEditor(status_dir, 'Alpha') as alpha, \
            FakeUnityEditor(status_dir, 'Beta') as beta:
        tools = UnityTools(config, 'gw')

        async def scenario() -> list[types.CallToolResult]:
            async with connect(tools) as client:
                return [await client.call_tool('unity_refresh', {}),
                        await client.call_tool('unity_run_tests', {}),
                        await client.call_tool('unity_refresh', {'instance': 'Beta'}),
                        await client.call_tool('unity_refresh', {'instance': 'Gamma'}),
                        await client.call_tool('unity_instances', {})]
        refresh, tests, chosen, unknown, instances = anyio.run(scenario)
        for result in (refresh, tests):
            body = structured(result)
            assert result.is_error and body['error'] == 'several_instances'
            assert {i['instance_id'] for i in body['data']['instances']} == {
                alpha.instance_id, beta.instance_id}
            assert alpha.instance_id in body['message']
        assert structured(chosen)['instance_id'] == beta.instance_id
        assert structured(unknown)['error'] == 'unknown_instance'
        assert len(structured(instances)['instances']) == 2
        assert alpha.commands == [] and beta.commands.count('refresh_unity') == 1


@pytest.mark.parametrize('name, arguments, field', [
    ('unity_refresh', {'mode': 'sometimes'}, 'mode'),
    ('unity_refresh', {'bogus': 1}, 'bogus'),
    ('unity_run_tests', {'filters': {'test_names': 'Fake.Tests.Test0'}}, 'filters.test_names'),
    ('unity_run_tests', {'filters': {'names': []}}, 'filters.names'),
    ('unity_instances', {'x': 1}, 'x'),
])
def test_bad_arguments_name_the_field(config: UnityConfig, name: str,
                                      arguments: dict[str, Any], field: str) -> None:
    tools = UnityTools(config, 'gw')

    async def scenario() -> types.CallToolResult:
        async with connect(tools) as client:
            return await client.call_tool(name, arguments)
    result = anyio.run(scenario)
    body = structured(result)
    assert result.is_error and body['error'] == 'invalid_arguments'
    assert body['data']['field'] == field and field in body['message']


def test_no_editor_and_editor_errors_are_structured(config: UnityConfig,
                                                    status_dir: Path) -> None:
    tools = UnityTools(config, 'gw')

    async def call(name: str) -> types.CallToolResult:
        async with connect(tools) as client:
            return await client.call_tool(name, {})
    result = anyio.run(call, 'unity_refresh')
    assert result.is_error and structured(result)['error'] == 'unity_unavailable'

    with FakeUnityEditor(status_dir, 'Busy', test_duration_s=1.0) as editor:
        async def orphan_run() -> None:  # a run started outside any lease (unity-mcp #1272)
            (instance,) = await Finder(config).instances()
            bridge = UnityBridge(instance)
            await bridge.command('run_tests', {'mode': 'EditMode'}, idempotent=False)
            await bridge.aclose()
        anyio.run(orphan_run)
        # Work under way that no lease covers is waited for, within ready_wait_s.
        tools = UnityTools(config.model_copy(update={'ready_wait_s': 0.5}), 'gw')
        result = anyio.run(call, 'unity_run_tests')
        body = structured(result)
        assert result.is_error and body['error'] == 'unity_not_ready'
        assert 'tests_running' in body['message'] and body['hint'] == 'retry'
        assert editor.commands.count('run_tests') == 1  # ours was never sent
        assert tools.leases.who_holds(editor.instance_id) is None
        # An Editor error passes through structured (the bridge itself, no wait first).

        async def refresh_during_run() -> None:
            (instance,) = await Finder(config).instances()
            bridge = UnityBridge(instance)
            try:
                await bridge.refresh({'compile': 'none'}, 1.0)
            finally:
                await bridge.aclose()
        with pytest.raises(UnityCommandError) as refused:
            anyio.run(refresh_during_run)
        answer = error_answer(refused.value)
        assert answer.is_error
        body = structured(answer)
        assert body['data']['editor_error'] == 'tests_running'
        assert body['hint'] == 'retry' and body['data']['retry_after_ms'] == 5000


def test_a_pinned_port_shares_the_discovered_instance_id(config: UnityConfig,
                                                         editor: FakeUnityEditor) -> None:
    pinned = config.model_copy(update={'port': editor.port})
    tools = UnityTools(pinned, 'gw')

    async def scenario() -> types.CallToolResult:
        async with connect(tools) as client:
            return await client.call_tool('unity_refresh', {})
    body = structured(anyio.run(scenario))
    assert body['success'] and body['instance_id'] == editor.instance_id


def test_a_test_run_rides_out_a_domain_reload(config: UnityConfig, status_dir: Path) -> None:
    with FakeUnityEditor(status_dir, 'PlayMode', test_duration_s=0.15,
                         status_interval_s=0.05) as editor:
        tools = UnityTools(config, 'gw')
        messages: list[str] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            messages.append(message or '')
            if total and value >= 1 and editor.reloads == 0 and not editor.reloading:
                editor.begin_reload(0.5)  # as entering play mode does

        async def scenario() -> types.CallToolResult:
            async with connect(tools) as client:
                return await client.call_tool('unity_run_tests', {'mode': 'PlayMode'},
                                              progress_callback=on_progress)
        result = anyio.run(scenario)
        body = structured(result)
        assert not result.is_error and body['status'] == 'succeeded', body
        assert editor.reloads == 1 and any('still waiting' in m for m in messages)
        assert editor.overlaps == 0
