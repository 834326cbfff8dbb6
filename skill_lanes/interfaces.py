"""Names, QoS and rules that several skill_lanes executables share: one place to read them.

The lane manager, the MCP gateway, the simulated driver, the tests and the launch files all
meet on these ROS interfaces. Importing this module pulls in no node, so the gateway and the
simulated driver never import `lane_manager.node`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from skill_lanes.config import DEFAULT_EMERGENCY_STOP_TOPIC

# Latched JSON topics: a late subscriber gets the last message at once.
LANE_STATE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)

# Relative names resolve under the node's namespace (`ros2 launch ... namespace:=robot1`
# gives /robot1/skill_lanes/tool_lanes), so two stacks on one robot never collide. The lane
# manager's namespace (config lane_manager.namespace, default 'lane_manager') is relative
# too. Every node of a stack gets its names from one `StackNames` (below), never from the
# config's namespace as written. /diagnostics stays absolute (ROS convention).
TOOL_LANES_TOPIC = 'skill_lanes/tool_lanes'
SIM_STATS_TOPIC = 'sim_driver/stats'
DIAGNOSTICS_TOPIC = '/diagnostics'


def normalize_namespace(namespace: str) -> str:
    """'/lane_manager', 'lane_manager' and '/lane_manager/' all name '/lane_manager'."""
    return '/' + namespace.strip('/')


def skill_server_name(namespace: str, skill: str) -> str:
    """The lane manager's action server for one skill (send goals here, not to the driver)."""
    return f'{normalize_namespace(namespace)}/skills/{skill}'


def lane_state_topic(namespace: str) -> str:
    """std_msgs/String (JSON), LANE_STATE_QOS: every lane's holder, queue, endings."""
    return f'{normalize_namespace(namespace)}/lane_state'


def lane_service_name(namespace: str, lane: str, verb: str) -> str:
    """Per-lane operator services, e.g. `<namespace>/lanes/<lane>/release`."""
    return f'{normalize_namespace(namespace)}/lanes/{lane}/{verb}'


@dataclass(frozen=True)
class StackNames:
    """Every name the lane manager serves and a gateway uses, fully resolved: one rule.

    Both sides build it with `StackNames.of(node, config.lane_manager.namespace)`: each
    relative name is expanded under that node's own namespace (`--ros-args -r __ns:=/robot1`,
    launch's `namespace:=robot1`) exactly as rclpy expands it (`resolve_topic_name(...,
    only_expand=True)`; remap rules still apply when the name is used). A gateway in the
    lane manager's namespace therefore names the very services the lane manager serves, and
    a name built from the config's namespace as written (`/lane_manager/...` whatever the
    node's namespace) cannot happen: in a namespaced stack beside a plain one, it reached the
    other robot's lane manager (a stop button stopped the wrong robot).
    """

    lane_manager: str  # the lane manager's namespace, absolute, e.g. /robot1/lane_manager
    tool_lanes: str    # TOOL_LANES_TOPIC, resolved
    goal_agents: str   # GOAL_AGENTS_TOPIC, resolved

    @classmethod
    def of(cls, node: Any, lane_manager_namespace: str) -> 'StackNames':
        """The names as `node` (any rclpy Node) resolves them."""
        def resolve(name: str) -> str:
            return node.resolve_topic_name(name, only_expand=True)
        return cls(normalize_namespace(resolve(lane_manager_namespace)),
                   resolve(TOOL_LANES_TOPIC), resolve(GOAL_AGENTS_TOPIC))

    def skill_server(self, skill: str) -> str:
        return skill_server_name(self.lane_manager, skill)

    @property
    def lane_state(self) -> str:
        return lane_state_topic(self.lane_manager)

    def lane_service(self, lane: str, verb: str) -> str:
        return lane_service_name(self.lane_manager, lane, verb)

    @property
    def approval_decisions(self) -> str:
        return approval_decisions_topic(self.lane_manager)


# std_msgs/Bool the lane manager follows (config lane_manager.emergency_stop_topic): true
# cancels every goal of the configured lanes and refuses new ones until it turns false.
# Reliable + transient local: a stop published before the lane manager started still counts.
# Its default name is defined in config.py, which must not import ROS as this module does.
EMERGENCY_STOP_TOPIC = DEFAULT_EMERGENCY_STOP_TOPIC
EMERGENCY_STOP_QOS = LANE_STATE_QOS
EMERGENCY_STOP_REASON = 'emergency_stop'

# Per-lane operator take-over (std_srvs/Trigger at lane_service_name(ns, lane, verb)):
# take -> every agent is refused with reason `operator` until give_back.
TAKE_VERB = 'take'
GIVE_BACK_VERB = 'give_back'
OPERATOR_REASON = 'operator'

# Approval of goals of `approval: operator` skills. Per lane, std_srvs/SetBool at
# lane_service_name(ns, lane, APPROVE_VERB): data true approves, false denies the lane's
# OLDEST goal awaiting approval (a physical button). Per goal, std_msgs/String JSON
# {"goal_id", "approve": bool, "by"} on approval_decisions_topic(ns) (reliable, volatile: a
# decision is for now, never replayed to a restarted lane manager); the decision is confirmed
# by the lane state (`approvals`: goal_id, decision, by, at).
APPROVE_VERB = 'approve'
APPROVAL_BY_LIMIT = 120  # characters of a decision's `by` kept (shown, never interpreted)
APPROVAL_DECISIONS_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                                    durability=DurabilityPolicy.VOLATILE)

# Who asked for a goal: one message per goal (`{"gateway": ..., "agents": {goal id: agent}}`),
# kept by each gateway's writer for the last GOAL_AGENTS_HISTORY goals (transient local), so
# a reader that starts later (a lane manager, a tool) still hears them, as the latched list
# gave it before. (A goal a restarted lane manager adopts runs under the driver goal id the
# old life chose, which no gateway names: it shows as adopted, not by its agent.) One small
# message a goal, where one message holding the last 256 (35 KB) went before every goal.
GOAL_AGENTS_HISTORY = 256
GOAL_AGENTS_QOS = QoSProfile(depth=GOAL_AGENTS_HISTORY, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)


def approval_decisions_topic(namespace: str) -> str:
    return f'{normalize_namespace(namespace)}/approval_decisions'


# Who asked for each goal (std_msgs/String JSON, LANE_STATE_QOS: latched per gateway).
# Each gateway publishes {"gateway": <node>, "agents": {<goal id>: {"client", "version",
# "session", "tool", "skill"}}} with its most recent goals; the lane manager joins it into
# lane state (holder, queue, endings, refusals: `agent`, `asked_by`).
GOAL_AGENTS_TOPIC = 'skill_lanes/goal_agents'


# Big goals: sending a goal converts it to its wire form in the sending thread (0.3 s for a
# 150k-point trajectory, about 2 ms for 1000 points). A goal with this many elements (fields
# and sequence entries) or more is sent off the thread that would stall others meanwhile: by
# the lane manager from its lane's own thread (goal_intake.py), by the gateway from a worker
# thread instead of its event loop. Smaller goals go at once: a thread hand-over costs about
# 1 ms (lane hand-off, bench_lane_manager.py b).
BIG_GOAL_ELEMENTS = 1000


def goal_elements(message: Any) -> int:
    """A cheap size measure of a ROS message: its fields, a sequence, array or string
    counting as its length (at least 1), not looked into: a 150k-point trajectory is
    measured at once.
    """
    count = 0
    for name in message.get_fields_and_field_types():
        value = getattr(message, name)
        if hasattr(value, 'get_fields_and_field_types'):
            count += goal_elements(value)
        elif hasattr(value, '__len__'):
            count += max(1, len(value))
        else:
            count += 1
    return count


def is_big_goal(goal: Any) -> bool:
    """Whether sending `goal` takes long enough to stall a shared thread (see above)."""
    return goal_elements(goal) >= BIG_GOAL_ELEMENTS
