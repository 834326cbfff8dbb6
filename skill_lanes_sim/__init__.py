"""The simulated robot and everything that brings a stack up without hardware: the simulated
drivers (`sim_driver`), the demo (`demo`, `make demo` / `make serve`), and the process
plumbing the demo, the tests, the benches and the soak share: `isolation` (a ROS
environment of the run's own: domain id, loopback-only Fast DDS, clean-up of /dev/shm),
`processes` (OS processes that are always stopped, their output in a log file) and
`stack` (sim driver + lane manager started together).
"""
