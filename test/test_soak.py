"""The short soak (about two minutes with its drain): many agents over stdio and HTTP, random
skills (navigate goals of 5-30 s, an arm driver that ignores cancels), some cancelled, while
the sim driver is killed or stalled (SIGSTOP/SIGCONT), the HTTP gateway and the lane manager
are killed and restarted, and a bypass client sends goals around the lane manager. Overlaps
are counted by the drivers. The long run is `python test/soak.py --seconds 600 --agents 8`."""
import json
import sys

import pytest

from support import wait_until


@pytest.mark.slow
def test_short_soak_keeps_every_invariant(processes):
    soak = processes.start([sys.executable, 'test/soak.py', '--seconds', '50', '--agents', '4',
                            '--http-port', '18791'], name='soak')
    wait_until(lambda: soak.popen.poll() is not None, 360, interval=0.5, what='the soak run')
    output = soak.output()
    report = json.loads(output[output.index('{\n'):])
    assert report['calls'] > 20, report
    assert report['faults_injected'] >= 1, report
    assert report['lane_state_seen'] and report['sim_stats_seen'], report
    assert report['bypass_goals_sent'] >= 1, report
    assert report['overlaps'] == 0, report
    assert report['lost'] == 0, report
    assert report['stuck_holds'] == 0 and report['orphan_goals'] == 0, report
    assert report['stuck_lanes'] == [], report
    assert soak.popen.returncode == 0, output[-2000:]
