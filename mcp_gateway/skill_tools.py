"""Robot skills as MCP tools: calls, goals, and the answers (busy, ended, refused).

One tool per configured skill, named as the skill, plus `lanes_status`, `lane_stop`,
`lane_release` and the job-handle tools (`skill_start`, `skill_status`, `skill_cancel`) for
clients whose request timeout is shorter than a robot action. What the tools look like is
`tool_defs.py`; how arguments become a goal is `skill_args.py` (run in a worker thread).
Every failure is an `isError` result with a structured body conforming to the tool's
outputSchema, never a JSON-RPC error or a traceback.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

import anyio
import jsonschema
import mcp_types as types

from skill_lanes.config import Config, ConfigError, skill_limits
from skill_lanes.goal_limits import REFUSAL_PREFIX as LIMITS_REFUSAL
from skill_lanes.limit_types import LimitTypeError
from mcp_gateway.tool_names import BUILTIN_TOOL_NAMES, OPERATOR_TOOL_NAMES
from mcp_gateway.approval import approval_note, awaiting_text, decide_tool
from mcp_gateway.node import (GatewayNode, GoalEvents, GoalOutcome, LaneManagerUnavailable,
                              ServiceAbsent)
from mcp_gateway.results import error_body, error_result, tool_result
from mcp_gateway.ros_json import ArgumentError, Limits, to_json
from mcp_gateway.skill_args import SkillArguments
from mcp_gateway.progress import ProgressPump, ReportProgress
from mcp_gateway.tool_defs import LANE_META_KEY, builtin_tools, operator_tools, skill_tool

__all__ = ['LANE_META_KEY', 'ReportProgress', 'SkillTools']
JOB_LIMIT = 256  # finished jobs kept for skill_status
LANE_STOP_REASON = 'stopped by lane_stop'
SMALL_ARGUMENTS = 256  # JSON values: fewer are converted on the event loop (~0.1 ms)


def busy_result(skill: str, lane: str, outcome: GoalOutcome, default_retry_ms: int
                ) -> types.CallToolResult:
    """The unity-mcp busy shape: the agent may retry after `retry_after_ms`."""
    refusal = outcome.refusal
    reason = (refusal.reason if refusal else '') or f'lane {lane!r} refused the goal'
    holder = refusal.holder if refusal else None
    return error_result(
        'operation_busy', reason, hint='retry', reason=reason, lane=lane, skill=skill,
        holder=holder.model_dump(mode='json') if holder is not None else None,
        goal_id=outcome.goal_id,
        retry_after_ms=refusal.retry_after_ms if refusal else default_retry_ms)


def goal_answer(skill: str, lane: Optional[str], outcome: GoalOutcome,
                stopped_by_lane_stop: bool = False) -> types.CallToolResult:
    """The answer to a goal that was accepted: its end, with the driver's result or null.

    `result` is null whenever the lane state says the driver gave no result (refused, lost,
    given up, cancelled while queued): a default Result would claim what no driver said
    (e.g. error_code 0 = SUCCESSFUL). A goal stopped by lane_stop says so.
    """
    ending = outcome.ending
    driver_result = (ending is None or ending.driver_result) and outcome.result is not None
    body = {'status': outcome.status, 'goal_id': outcome.goal_id, 'skill': skill,
            'lane': lane, 'result': to_json(outcome.result) if driver_result else None}
    if outcome.status == 'succeeded':
        return tool_result(body)
    reason = (ending.reason if ending else None) or f'the goal was {outcome.status}'
    if stopped_by_lane_stop and 'lane_stop' not in reason:
        reason = LANE_STOP_REASON
    if not driver_result:
        reason += ' (the driver gave no result)'
    return tool_result({**error_body(f'goal_{outcome.status}', reason), **body},
                       is_error=True)


def is_small(value: Any, budget: int = SMALL_ARGUMENTS) -> bool:
    """True when `value` holds fewer than `budget` JSON values (stops counting there)."""
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def error_field(error: jsonschema.ValidationError) -> str:
    """The dotted path of the value a schema error is about (`a.b[3].c`, as ros_json names
    fields); for an unknown property, the property itself rather than its parent.
    """
    path = ''
    for part in error.absolute_path:
        path = f'{path}[{part}]' if isinstance(part, int) else (
            f'{path}.{part}' if path else str(part))
    if error.validator == 'additionalProperties' and isinstance(error.instance, dict):
        known = (error.schema or {}).get('properties', {})
        extra = next((key for key in error.instance if key not in known), None)
        if extra is not None:
            path = f'{path}.{extra}' if path else str(extra)
    return path


@dataclass
class Job:
    """A goal started with `skill_start`, followed with `skill_status`."""

    goal_id: str
    skill: str
    task: Optional[asyncio.Task] = None
    state: str = 'sending'
    feedback: Any = None
    feedback_count: int = 0
    result: Optional[dict] = None
    started_at: float = field(default_factory=time.time)


class SkillTools:
    """The skill tools of one gateway."""

    def __init__(self, config: Config, ros: GatewayNode) -> None:
        self.config = config
        self.ros = ros
        gateway = config.gateway
        self._arguments: dict[str, SkillArguments] = {}
        for name, skill in config.skills.items():
            try:
                goal_class = ros.action_types[name].Goal
                self._arguments[name] = SkillArguments(
                    goal_class, Limits(skill.allow_non_finite, gateway.max_array_items),
                    skill.fields, skill.fixed, skill.required, gateway.max_request_bytes,
                    skill_limits(skill, goal_class))
            except LimitTypeError as exc:
                raise ConfigError(f'skills.{name}.limits.{exc}') from None
            except (ValueError, ArgumentError) as exc:
                raise ConfigError(f'skills.{name}: {exc}') from None
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, str] = {}       # goal id -> lane, for calls in flight here
        self._stopped: set[str] = set()          # goal ids this gateway stopped by lane_stop
        self._tools = [
            skill_tool(name, skill, [config.lanes[n] for n in skill.all_lanes],
                       self._arguments[name].schema, ros.action_types[name].Result)
            for name, skill in config.skills.items()]
        self._tools += builtin_tools(sorted(config.skills), sorted(config.lanes))
        self._builtin_names = set(BUILTIN_TOOL_NAMES)
        if gateway.operator_tools:
            self._tools += operator_tools(sorted(config.lanes))
            self._builtin_names |= OPERATOR_TOOL_NAMES
        # The gateway's own tools are checked against their inputSchema too (the SDK's
        # low-level server does not validate arguments).
        self._builtin_validators = {
            tool.name: jsonschema.Draft202012Validator(tool.input_schema)
            for tool in self._tools if tool.name in self._builtin_names}

    def tools(self) -> list[types.Tool]:
        return list(self._tools)

    def tool_lanes(self) -> list[dict]:
        """Tool -> lane metadata for the /skill_lanes/tool_lanes topic."""
        return [{'tool': name, 'skill': name, 'lane': skill.primary_lane,
                 'lanes': list(skill.all_lanes),
                 'policy': (self.config.lanes[skill.primary_lane].policy
                            if skill.primary_lane else None),
                 'action_type': skill.action_type}
                for name, skill in self.config.skills.items()]

    def handles(self, name: str) -> bool:
        return name in self.config.skills or name in self._builtin_names

    # ---------------------------------------------------------------- tools/call
    async def call(self, name: str, arguments: dict,
                   report_progress: ReportProgress) -> types.CallToolResult:
        if name in self.config.skills:
            return await self.run_skill(name, arguments, report_progress)
        handler = {'lanes_status': self._lanes_status, 'lane_stop': self._lane_stop,
                   'lane_release': self._lane_release, 'skill_start': self._skill_start,
                   'skill_status': self._skill_status, 'skill_cancel': self._skill_cancel,
                   'lane_take': partial(self._lane_take, 'take'),
                   'lane_give_back': partial(self._lane_take, 'give_back'),
                   'goal_approve': partial(self._goal_decide, True),
                   'goal_deny': partial(self._goal_decide, False)}[name]
        error = next(iter(sorted(self._builtin_validators[name].iter_errors(arguments),
                                 key=lambda e: list(e.absolute_path))), None)
        if error is not None:
            return error_result('invalid_arguments', error.message[:300],
                                field=error_field(error), problem=error.message[:300])
        return await handler(arguments)

    def make_goal(self, skill: str, arguments: Any) -> Any:
        """Arguments -> Goal message; raises ArgumentError naming the field."""
        return self._arguments[skill].to_goal(arguments)

    async def make_goal_off_loop(self, skill: str, arguments: Any) -> Any:
        """make_goal in a worker thread: a 10k-point trajectory must not stall other calls.
        Small arguments (most calls) are converted at once: a thread hop costs more.
        """
        if is_small(arguments):
            return self.make_goal(skill, arguments)
        return await anyio.to_thread.run_sync(self.make_goal, skill, arguments)

    async def run_skill(self, skill: str, arguments: Any, report_progress: ReportProgress,
                        job: Optional[Job] = None) -> types.CallToolResult:
        """One goal through the lane manager; progress while it runs."""
        lane = self.config.skills[skill].primary_lane
        try:
            goal = await self.make_goal_off_loop(skill, arguments)
        except ArgumentError as exc:
            return error_result('invalid_arguments', str(exc), field=exc.field,
                                problem=exc.problem, skill=skill, **exc.details)
        goal_id = uuid.UUID(job.goal_id) if job else uuid.uuid4()
        progress = ProgressPump(report_progress, skill, self.config.gateway.progress_interval_s,
                                partial(awaiting_text, self.ros, str(goal_id)))

        def on_feedback(feedback: Any) -> None:
            progress.feedback(feedback)
            if job is not None:
                job.feedback = to_json(feedback)
                job.feedback_count += 1

        def on_accepted(gid: str) -> None:
            progress.note(f'{skill}: accepted (goal {gid})' + approval_note(
                self.config.skills[skill]))
            if job is not None:
                job.state = 'accepted'

        pump = asyncio.create_task(progress.run())
        self._running[str(goal_id)] = lane or ''
        try:
            outcome = await self.ros.run_goal(skill, goal, GoalEvents(on_accepted, on_feedback),
                                              goal_id)
        except LaneManagerUnavailable as exc:
            return error_result('lane_manager_unavailable', str(exc), hint='retry',
                                skill=skill, lane=lane, retry_after_ms=2000)
        finally:
            pump.cancel()
            self._running.pop(str(goal_id), None)
            stopped = str(goal_id) in self._stopped
            self._stopped.discard(str(goal_id))
        if not outcome.accepted:
            refusal = outcome.refusal
            reason = refusal.reason if refusal is not None else ''
            if refusal is not None and reason.startswith(LIMITS_REFUSAL):  # its config's limits
                return error_result(
                    'invalid_arguments', reason, problem=reason.removeprefix(LIMITS_REFUSAL),
                    skill=skill, lane=lane, goal_id=outcome.goal_id,
                    field=refusal.field, value=refusal.value, limit=refusal.limit)
            if lane is None:
                return error_result('goal_rejected', f'the lane manager refused {skill!r}',
                                    skill=skill, goal_id=outcome.goal_id)
            return busy_result(skill, lane, outcome, self.config.lanes[lane].retry_after_ms)
        return goal_answer(skill, lane, outcome, stopped)

    async def _lanes_status(self, arguments: dict) -> types.CallToolResult:
        state = self.ros.lane_state
        if state is None:
            return error_result('lane_manager_unavailable',
                                'no lane state received from the lane manager yet',
                                hint='retry', retry_after_ms=2000)
        return tool_result(dict(state))  # the whole message: see skill_lanes/lane_state.py

    async def _lane_stop(self, arguments: dict) -> types.CallToolResult:
        lane = arguments['lane']
        mine = {gid for gid, goal_lane in self._running.items() if goal_lane == lane}
        self._stopped |= mine
        try:
            ok, message = await self.ros.call_lane_service(lane, 'stop')
        except ServiceAbsent:
            return await self._cancel_lane(lane)
        except LaneManagerUnavailable as exc:
            self._stopped -= mine
            return error_result('lane_manager_unavailable', str(exc), hint='retry',
                                lane=lane, retry_after_ms=2000)
        if not ok:
            self._stopped -= mine
            return error_result('lane_stop_failed', message or 'the lane manager refused',
                                lane=lane)
        return tool_result({'lane': lane, 'stopped': True, 'cancelled': None,
                            'detail': message})

    async def _cancel_lane(self, lane: str) -> types.CallToolResult:
        """Without the lane manager's stop service: cancel every goal of the lane's skills
        (the action protocol's cancel-all). Goals of this gateway then end naming lane_stop;
        others' goals end as the lane manager words a caller's cancel.
        """
        cancelled = 0
        try:
            for skill, cfg in self.config.skills.items():
                if lane in cfg.all_lanes:
                    cancelled += await self.ros.cancel_all(skill)
        except (LaneManagerUnavailable, TimeoutError) as exc:
            return error_result('lane_manager_unavailable', str(exc) or 'timed out',
                                hint='retry', lane=lane, retry_after_ms=2000)
        return tool_result({'lane': lane, 'stopped': True, 'cancelled': cancelled,
                            'detail': f'{LANE_STOP_REASON}: cancelled {cancelled} goal(s) '
                                      '(the lane manager has no stop service)'})

    async def _lane_release(self, arguments: dict) -> types.CallToolResult:
        lane = arguments['lane']
        try:
            ok, message = await self.ros.call_lane_service(lane, 'release')
        except ServiceAbsent as exc:
            return error_result('unsupported', f'{exc}: this lane manager cannot release a '
                                'lane by hand', lane=lane)
        except LaneManagerUnavailable as exc:
            return error_result('lane_manager_unavailable', str(exc), hint='retry',
                                lane=lane, retry_after_ms=2000)
        if not ok:
            return error_result('release_refused', message or 'the lane manager refused',
                                lane=lane)
        return tool_result({'lane': lane, 'released': True, 'detail': message})

    async def _lane_take(self, verb: str, arguments: dict) -> types.CallToolResult:
        """lane_take / lane_give_back: the lane manager's take / give_back service."""
        lane = arguments['lane']
        try:
            ok, message = await self.ros.call_lane_service(lane, verb)
        except ServiceAbsent as exc:
            return error_result('unsupported', f'{exc}: this lane manager has no take-over',
                                lane=lane)
        except LaneManagerUnavailable as exc:
            return error_result('lane_manager_unavailable', str(exc), hint='retry',
                                lane=lane, retry_after_ms=2000)
        if not ok:
            return error_result('not_taken', message or 'the lane manager refused', lane=lane)
        return tool_result({'lane': lane, 'taken': verb == 'take', 'detail': message})

    async def _goal_decide(self, approve: bool, arguments: dict) -> types.CallToolResult:
        return await decide_tool(self.ros, arguments['goal_id'], approve)

    async def _skill_start(self, arguments: dict) -> types.CallToolResult:
        skill = arguments.get('skill')
        if skill not in self.config.skills:
            return error_result('invalid_arguments', f'unknown skill {skill!r}', field='skill',
                                known=sorted(self.config.skills))
        try:
            await self.make_goal_off_loop(skill, arguments.get('arguments', {}))
        except ArgumentError as exc:
            return error_result('invalid_arguments', str(exc), field=f'arguments.{exc.field}',
                                problem=exc.problem, skill=skill, **exc.details)
        job = Job(str(uuid.uuid4()), skill)
        self._remember(job)

        async def no_progress(progress: float, total: Optional[float],
                              message: Optional[str]) -> None:
            return None

        async def run() -> None:
            result = await self.run_skill(skill, arguments.get('arguments', {}), no_progress,
                                          job)
            job.result = result.structured_content
            job.state = (result.structured_content or {}).get('status') or (
                'refused' if (result.structured_content or {}).get('error') == 'operation_busy'
                else 'failed')

        job.task = asyncio.create_task(run())
        await asyncio.sleep(0)
        return tool_result(self._job_body(job))

    def job_skill(self, goal_id: str) -> Optional[str]:
        """The skill of a skill_start job (None: no such job), for the permission check."""
        job = self._jobs.get(goal_id)
        return job.skill if job is not None else None

    def _remember(self, job: Job) -> None:
        self._jobs[job.goal_id] = job
        if len(self._jobs) > JOB_LIMIT:
            for goal_id, old in list(self._jobs.items()):
                if old.task is not None and old.task.done():
                    del self._jobs[goal_id]
                if len(self._jobs) <= JOB_LIMIT:
                    break

    def _job_body(self, job: Job) -> dict:
        state = job.state
        if state == 'accepted' and self.ros.awaiting_approval(job.goal_id) is not None:
            state = 'awaiting_approval'
        return {'goal_id': job.goal_id, 'skill': job.skill, 'state': state,
                'lane': self.config.skills[job.skill].primary_lane,
                'feedback': job.feedback, 'feedback_count': job.feedback_count,
                'result': job.result, 'started_at': round(job.started_at, 3)}

    async def _skill_status(self, arguments: dict) -> types.CallToolResult:
        job = self._jobs.get(str(arguments.get('goal_id')))
        if job is None:
            return error_result('unknown_goal', f"no job {arguments.get('goal_id')!r} "
                                'started with skill_start on this gateway')
        return tool_result(self._job_body(job))

    async def _skill_cancel(self, arguments: dict) -> types.CallToolResult:
        job = self._jobs.get(str(arguments.get('goal_id')))
        if job is None:
            return error_result('unknown_goal', f"no job {arguments.get('goal_id')!r}")
        if job.task is not None and not job.task.done():
            job.task.cancel()
            try:
                await job.task
            except asyncio.CancelledError:
                pass
            job.state = 'canceled'
        return tool_result(self._job_body(job))

    async def aclose(self) -> None:
        """Cancel running jobs (their goals are cancelled at the lane manager)."""
        tasks = [j.task for j in self._jobs.values() if j.task and not j.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
