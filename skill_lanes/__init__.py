"""What the lane manager and the gateway share: the one config file, the ROS names and QoS
of the stack, the goal vocabulary and ids, the typed lane state, goal limits, process
plumbing (runtime, stop signal, DDS files), the rclpy compatibility guard, action links, and
the SROS2 policy of a stack. No node lives here: `lane_manager` and `mcp_gateway` import
this package, never each other.
"""
