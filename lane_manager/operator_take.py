"""Operator take-over of a lane: `<ns>/lanes/<lane>/take` and `.../give_back` (std_srvs/Trigger).

Taking a lane (Spot's force acquire) cancels its running goal or lets it finish (lane config
`on_take`), empties its queue with a reason, and refuses every agent with reason `operator`
until the lane is given back. A thin shell around `LaneKeeper.block`; shown in lane state
(`blocked_by: [operator]`, `taken`) and /diagnostics (ERROR naming the operator).
"""
from __future__ import annotations

import time
from functools import partial
from typing import Any

from std_srvs.srv import Trigger

from skill_lanes.interfaces import GIVE_BACK_VERB, OPERATOR_REASON, TAKE_VERB, StackNames


def take_reason(lane: str) -> str:
    return (f'{OPERATOR_REASON}: an operator has taken lane {lane!r}; goals are refused until '
            'it is given back')


class OperatorTake:
    """The take / give_back services of every lane of one lane manager."""

    def __init__(self, node: Any, names: StackNames) -> None:
        self._node = node
        self.taken: dict[str, float] = {}  # lane -> wall time taken
        for lane in node.config.lanes:
            for verb, handler in ((TAKE_VERB, self._on_take), (GIVE_BACK_VERB, self._on_give)):
                node.create_service(Trigger, names.lane_service(lane, verb),
                                    partial(handler, lane), callback_group=node.callback_group)

    def _on_take(self, lane: str, _request: Any, response: Any) -> Any:
        node = self._node
        cancel = node.config.lanes[lane].on_take == 'cancel'
        with node.keeper_turn() as turn:
            again = lane in self.taken
            self.taken.setdefault(lane, time.time())
            message, actions = turn.keeper.block(OPERATOR_REASON, True, [lane],
                                                 take_reason(lane), turn.now,
                                                 cancel_running=cancel)
            turn.carry_out(actions)
        text = (f'lane {lane!r} taken by an operator' + (' (already taken)' if again else '')
                + f'; agents are refused until give_back. {message}')
        node.get_logger().warning(text)
        response.success, response.message = True, text
        return response

    def _on_give(self, lane: str, _request: Any, response: Any) -> Any:
        node = self._node
        with node.keeper_turn() as turn:
            was_taken = self.taken.pop(lane, None) is not None
            _, actions = turn.keeper.block(OPERATOR_REASON, False, [lane], '', turn.now)
            turn.carry_out(actions)
        text = (f'lane {lane!r} given back: agents may use it again' if was_taken
                else f'lane {lane!r} was not taken')
        node.get_logger().warning(text)
        response.success, response.message = was_taken, text
        return response

    def snapshot(self) -> dict:
        return {lane: round(at, 3) for lane, at in self.taken.items()}
