"""One goal at one driver, from the lane manager's choice to forward it until the DRIVER says
it has ended: an explicit state machine in plain Python (no ROS import).

Why a state machine of its own: the caller's end and the driver's end are two different
facts. A caller may be told ABORTED (the driver stopped answering, or never answered the goal
request) while the goal may still run at the driver; its lane must then stay held until the
driver itself reports the end (its `_action/status`, or a result) or the driver is gone.
Goals the lane manager never sent (found running at start: adopted; sent around it:
external) are tracked the same way, so every goal that can move a robot is accounted for.

Phases (every sub-state is a phase of its own; nothing beside the phase says where a goal is):
    waiting_for_driver  ours, admitted, not sent (driver absent, or its status not known yet)
    sent                goal request out; neither answered nor listed by the driver yet
    listed              request unanswered, but the driver's status already lists it active
                        (rcl publishes status and answers the request on different channels)
    running             the driver accepted it
    cancelling          a cancel was sent; repeated until the driver ends the goal
    result_pending      the driver says it is over (its status, or its cancel answer): the
                        lanes are free, the caller waits up to RESULT_WAIT_S for the Result
    unanswered          its caller was told it ended (request unanswered in time, or the
                        driver lost before answering); the driver never showed it: the lane is
                        held until the driver rejects it, lists it ended, or leaves
    ended_unconfirmed   its caller has an end (or never had one: a driver came back running
                        it), the driver did show it running and has not confirmed an end
    adopted / external  running at a driver, not sent by this lane manager (no caller)
    ended               the driver confirmed the end (or never had the goal, or is gone)

Every event returns the actions the node must carry out (send, cancel, end the caller).
"""
from __future__ import annotations

import enum
from typing import Any, Optional

from lane_manager.effects import (Action, CancelGoalAtDriver, DriverEnded,  # noqa: F401
                                  EndCaller, SendToDriver)
from skill_lanes.goal_outcome import (ACTIVE_STATUSES, TERMINAL_STATUSES,  # noqa: F401
                                       outcome_of_status)

CANCEL_REPEAT_S = 1.0                       # an unhonoured cancel is re-sent this often
RESULT_WAIT_S = 2.0                         # a result this late after the driver's terminal
CANCEL_UNKNOWN_GOAL = 2  # action_msgs/CancelGoal ERROR_UNKNOWN_GOAL_ID


class Phase(str, enum.Enum):
    WAITING = 'waiting_for_driver'
    SENT = 'sent'
    LISTED = 'listed'
    RUNNING = 'running'
    CANCELLING = 'cancelling'
    RESULT_PENDING = 'result_pending'
    UNANSWERED = 'unanswered'
    UNCONFIRMED = 'ended_unconfirmed'
    ADOPTED = 'adopted'
    EXTERNAL = 'external'
    ENDED = 'ended'


# Every move a goal's phase may make (one event may make two: sent -> running -> cancelling
# when a goal cancelled while its request was out is accepted). A goal starts WAITING (ours),
# ADOPTED, EXTERNAL or, come back with a driver that had left, UNCONFIRMED. `_move` refuses
# any other move; test/test_goal_transitions.py walks every one, and the keeper's
# adversarial state machine (test_keeper.py) fails on any move not listed.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.WAITING: frozenset({Phase.SENT, Phase.ENDED}),
    Phase.SENT: frozenset({Phase.LISTED, Phase.RUNNING, Phase.RESULT_PENDING,
                           Phase.UNANSWERED, Phase.ENDED}),
    Phase.LISTED: frozenset({Phase.RUNNING, Phase.RESULT_PENDING, Phase.UNCONFIRMED,
                             Phase.ENDED}),
    Phase.RUNNING: frozenset({Phase.CANCELLING, Phase.RESULT_PENDING, Phase.UNCONFIRMED,
                              Phase.ENDED}),
    Phase.CANCELLING: frozenset({Phase.RESULT_PENDING, Phase.UNCONFIRMED, Phase.ENDED}),
    Phase.RESULT_PENDING: frozenset({Phase.ENDED}),
    Phase.UNANSWERED: frozenset({Phase.UNCONFIRMED, Phase.ENDED}),
    Phase.UNCONFIRMED: frozenset({Phase.ENDED}),
    Phase.ADOPTED: frozenset({Phase.ENDED}),
    Phase.EXTERNAL: frozenset({Phase.ENDED}),
    Phase.ENDED: frozenset(),
}

# What the phase says of the caller and of the driver: the three questions the keeper asks.
_OUT = frozenset({Phase.SENT, Phase.LISTED})                   # request out, no answer yet
_NO_CALLER = frozenset({Phase.UNANSWERED, Phase.UNCONFIRMED, Phase.ADOPTED, Phase.EXTERNAL,
                        Phase.ENDED})                          # nobody waits for its end
_SHOWN = frozenset({Phase.LISTED, Phase.RUNNING, Phase.CANCELLING, Phase.RESULT_PENDING,
                    Phase.UNCONFIRMED, Phase.ADOPTED, Phase.EXTERNAL})  # the driver had it
_MAY_RUN = frozenset(Phase) - {Phase.WAITING, Phase.RESULT_PENDING, Phase.ENDED}


class DriverGoal:
    """The lifecycle of one goal at one driver."""

    def __init__(self, driver: str, driver_goal_id: str, lane: Optional[str], now: float,
                 caller_goal_id: Optional[str] = None, phase: Phase = Phase.WAITING,
                 cancel_grace_s: float = 5.0) -> None:
        self.driver = driver
        self.driver_goal_id = driver_goal_id
        self.lane = lane
        self.caller_goal_id = caller_goal_id
        self.phase = phase
        self.since = now
        self.sent_at: Optional[float] = None
        self.cancel_reason: Optional[str] = None
        self.first_cancel_at: Optional[float] = None
        self.last_cancel_at: Optional[float] = None
        self.cancel_grace_s = cancel_grace_s
        self.why: Optional[str] = None   # why it still holds its lane (operator text)
        # What the driver said it ended as, before any Result (kept once ended: the caller's
        # end then says the driver sent no result).
        self.driver_said: Optional[str] = None
        self.asked_at = now  # when its driver was last asked for its result (node)

    # ------------------------------------------------------------ queries
    @property
    def origin(self) -> str:
        if self.phase in (Phase.ADOPTED, Phase.EXTERNAL):
            return self.phase.value
        return 'lane_manager'

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    @property
    def caller_ended(self) -> bool:
        """Nobody waits for this goal's end any more (or nobody ever did)."""
        return self.caller_goal_id is None or self.phase in _NO_CALLER

    @property
    def lingering(self) -> bool:
        """Holds its lane without a caller: the lane stays held on the driver's word alone."""
        return not self.ended and self.caller_ended

    @property
    def driver_done(self) -> bool:
        """The driver said the goal is over (status or cancel answer); the Result may follow."""
        return self.phase is Phase.RESULT_PENDING

    @property
    def seen_active(self) -> bool:
        """The driver has shown this goal (accepted it, or listed it): its silence about it
        now means it is over; before, its request may still be queued there.
        """
        return self.phase in _SHOWN

    @property
    def reached_driver(self) -> bool:
        """Sent to its driver, or found running there (false: ended before it was sent)."""
        return self.sent_at is not None or self.caller_goal_id is None

    @property
    def awaiting_answer(self) -> bool:
        """Its request is out and the driver has not answered it yet."""
        return self.phase in _OUT

    @property
    def may_run(self) -> bool:
        """The driver may be running it (sent and not confirmed ended)."""
        return self.phase in _MAY_RUN

    # ------------------------------------------------------------ events
    def send(self, now: float) -> list[Action]:
        if self.phase is not Phase.WAITING:
            return []
        self._move(Phase.SENT, now)
        self.sent_at = now
        assert self.caller_goal_id is not None
        return [SendToDriver(self.caller_goal_id, self.driver_goal_id)]

    def give_up_waiting(self, reason: str, now: float) -> list[Action]:
        """Never sent: safe to end at once."""
        if self.phase is not Phase.WAITING:
            return []
        return self._end(now, 'aborted', reason)

    def answered(self, accepted: bool, now: float) -> list[Action]:
        if self.phase in _OUT:
            if not accepted:
                return self._end(now, 'aborted', f'driver {self.driver} rejected the goal')
            self._move(Phase.RUNNING, now)
            if self.cancel_reason is not None:
                return self._cancel(now, Phase.CANCELLING)
            return []
        if self.phase in (Phase.UNANSWERED, Phase.UNCONFIRMED):
            if not accepted:
                if self.phase is Phase.UNANSWERED:
                    self._move(Phase.ENDED, now)
                return []
            self.why = (f'driver {self.driver} accepted goal {self.driver_goal_id} after it was '
                        'given up; cancelling it, lane held until the driver ends it')
            return self._cancel(now, Phase.UNCONFIRMED)
        return []

    def result(self, outcome: str, result: Any, now: float) -> list[Action]:
        """The driver's result: it says the goal is over."""
        if self.ended:
            return []
        return self._end(now, outcome, self._end_reason(outcome), result, driver_result=True)

    def status(self, code: Optional[int], now: float) -> list[Action]:
        """The driver's status report for this goal id (None: not listed)."""
        if self.ended:
            return []
        if code in ACTIVE_STATUSES:
            if self.phase is Phase.SENT:
                self._move(Phase.LISTED, now)
                return []
            if self.phase is Phase.UNANSWERED:
                self._move(Phase.UNCONFIRMED, now)  # the driver has it after all
            if self.phase is Phase.UNCONFIRMED or (
                    self.phase in (Phase.ADOPTED, Phase.EXTERNAL)
                    and self.cancel_reason is not None):
                return self._cancel(now, self.phase, repeat_only=True)
            return []
        confirmed_gone = code in TERMINAL_STATUSES or (code is None and self.seen_active)
        if confirmed_gone and self.caller_ended:
            self._move(Phase.ENDED, now)
        elif confirmed_gone and self.phase in (_OUT | {Phase.RUNNING, Phase.CANCELLING}):
            return self._driver_says_over(outcome_of_status(code) or 'aborted', now)
        return []

    def cancel_answer(self, return_code: int, now: float) -> list[Action]:
        """The driver's answer to our cancel. Only ERROR_UNKNOWN_GOAL_ID (2) is its word that
        the goal does not run (a driver restarted under the same name never lists the old
        goal, so its status alone would never say so). ERROR_GOAL_TERMINATED (3) is not: rcl
        answers it for a goal already CANCELING that still runs. Not trusted for a goal the
        driver never reported either: its request may still be queued there (a late answer).
        """
        if self.ended or return_code != CANCEL_UNKNOWN_GOAL or not self.seen_active:
            return []
        if self.caller_ended:
            self._move(Phase.ENDED, now)
        elif not self.driver_done:
            return self._driver_says_over('aborted', now)
        return []

    def cancel(self, reason: str, now: float) -> list[Action]:
        if self.phase is Phase.WAITING:
            self.cancel_reason = reason
            return self._end(now, 'canceled', reason)
        if self.phase in _OUT:
            self.cancel_reason = self.cancel_reason or reason  # sent once it is accepted
            return []
        if self.phase is Phase.RUNNING:
            self.cancel_reason = reason
            return self._cancel(now, Phase.CANCELLING)
        if self.phase in (Phase.ADOPTED, Phase.EXTERNAL, Phase.UNANSWERED, Phase.UNCONFIRMED):
            if self.cancel_reason is None:
                self.cancel_reason = reason
                return self._cancel(now, self.phase)
        return []  # cancelling already, or the driver said it is over: nothing to cancel

    def tick(self, now: float, response_s: float) -> list[Action]:
        if self.phase is Phase.RESULT_PENDING:
            if now - self.since >= RESULT_WAIT_S:
                return self._end_without_result(now)
            return []  # its Result is on the way: no timeout, no cancel repeats
        if self.phase in _OUT and self.sent_at is not None and now - self.sent_at >= response_s:
            self.why = (f'driver {self.driver} did not answer the request for goal '
                        f'{self.driver_goal_id}; lane held until it reports that goal ended')
            return self._give_up_caller(now, (
                f'driver {self.driver} did not answer the goal request within '
                f'{response_s:g} s'))
        if self.cancel_reason is None or self.first_cancel_at is None or self.ended:
            return []
        if self.phase in (Phase.WAITING, Phase.UNANSWERED) or self.phase in _OUT:
            return []
        if now - self.first_cancel_at >= self.cancel_grace_s:
            self.why = (f'driver {self.driver} has not ended goal {self.driver_goal_id} '
                        f'{now - self.first_cancel_at:.0f} s after a cancel '
                        f'({self.cancel_reason}); cancel repeated, lane held')
        return self._cancel(now, self.phase, repeat_only=True)

    def driver_lost(self, lost_s: float, now: float) -> list[Action]:
        """The driver stopped answering (its liveness probe): the caller may end, the lane
        may not (a stalled driver runs on when it resumes).
        """
        if self.phase is Phase.RESULT_PENDING:
            return self._end_without_result(now)
        if self.phase not in _OUT | {Phase.RUNNING, Phase.CANCELLING}:
            return []
        self.why = (f'driver {self.driver} stopped answering; its goal {self.driver_goal_id} '
                    'may still run: lane held until it reports the end or leaves the graph')
        shown = self.seen_active
        actions = self._give_up_caller(now, (
            f'driver {self.driver} lost mid-goal (no answer for {lost_s:g} s)'))
        if shown:
            # Queued at the driver: it cancels the goal the moment it runs again.
            self.cancel_reason = self.cancel_reason or 'its caller was told the driver was lost'
            actions += self._cancel(now, Phase.UNCONFIRMED)
        return actions

    def driver_gone(self, now: float) -> list[Action]:
        """The driver left the graph: nothing of it runs any more."""
        if self.ended:
            return []
        if self.driver_done:
            return self._end_without_result(now)
        return self._end(now, 'aborted', f'driver {self.driver} left the graph mid-goal')

    def operator_release(self, now: float) -> list[Action]:
        if self.ended:
            return []
        return self._end(now, 'aborted', 'released by an operator')

    # ------------------------------------------------------------ helpers
    def _driver_says_over(self, outcome: str, now: float) -> list[Action]:
        """The caller still waits: it gets its end from the Result; if that never comes,
        from this word (tick, after RESULT_WAIT_S). The lanes are free at once.
        """
        self._move(Phase.RESULT_PENDING, now)
        self.driver_said = outcome
        assert self.caller_goal_id is not None
        return [DriverEnded(self.caller_goal_id, outcome, self._end_reason(outcome))]

    def _end_without_result(self, now: float) -> list[Action]:
        outcome = self.driver_said
        assert outcome is not None
        return self._end(now, outcome, (
            f'driver {self.driver} says goal {self.driver_goal_id} is over ({outcome}) '
            'but sent no result'))

    def _end_reason(self, outcome: str) -> Optional[str]:
        if outcome == 'succeeded':
            return None
        return self.cancel_reason or f'the driver {outcome} the goal'

    def _move(self, phase: Phase, now: float) -> None:
        if phase is not self.phase:
            if phase not in TRANSITIONS[self.phase]:
                raise AssertionError(f'goal {self.driver_goal_id}: no move {self.phase.value} '
                                     f'-> {phase.value} (TRANSITIONS)')
            self.phase = phase
            self.since = now
        if phase is Phase.ENDED:
            self.why = None

    def _cancel(self, now: float, phase: Phase, repeat_only: bool = False) -> list[Action]:
        if repeat_only and self.last_cancel_at is not None \
                and now - self.last_cancel_at < CANCEL_REPEAT_S:
            return []
        self._move(phase, now)
        if self.first_cancel_at is None:
            self.first_cancel_at = now
        self.last_cancel_at = now
        reason = self.cancel_reason or 'no caller any more'
        return [CancelGoalAtDriver(self.driver, self.driver_goal_id, reason)]

    def _end(self, now: float, outcome: str, reason: Optional[str], result: Any = None,
             driver_result: bool = False) -> list[Action]:
        """The goal is over at the driver: ENDED, and its caller, if one still waits, told."""
        waiting = not self.caller_ended
        self._move(Phase.ENDED, now)
        if not waiting:
            return []
        assert self.caller_goal_id is not None
        return [EndCaller(self.caller_goal_id, outcome, reason, result, driver_result)]

    def _give_up_caller(self, now: float, reason: str) -> list[Action]:
        """Tell the caller its goal ended (aborted) while the driver may still have it: the
        lane stays held (UNCONFIRMED if the driver showed it, else UNANSWERED).
        """
        assert self.caller_goal_id is not None and not self.caller_ended
        self._move(Phase.UNCONFIRMED if self.seen_active else Phase.UNANSWERED, now)
        return [EndCaller(self.caller_goal_id, 'aborted', reason, None, False)]
