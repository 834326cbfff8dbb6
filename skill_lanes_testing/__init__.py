"""Test and development helpers for skill_lanes (not part of the product at run time).

`isolation`: a ROS environment of this run's own (domain id, loopback-only Fast DDS without
shared memory) and clean-up of what killed processes leave in /dev/shm. `processes`: OS
processes that are always stopped, with their output in a log file. Used by the tests, the
benches, the soak and the demo.
"""
