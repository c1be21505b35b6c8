"""The inference thread decision (btnk_env.models.threads) counts work that competes at this
process's priority and not work started with ``nice``, which yields its cores."""

import subprocess
import sys
import time

import pytest

from btnk_env.models import threads

SPIN = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"


def test_niced_time_counts_only_for_a_niced_process():
    before, after = (100.0, 50.0, 10.0), (180.0, 250.0, 30.0)  # (normal busy, niced, own) ticks
    tick = threads.os.sysconf("SC_CLK_TCK")
    # 80 ticks of normal-priority time, 20 of them ours: 60 ticks by others over 1 s
    assert threads.others_cpu(before, after, 1.0, own_nice=0) == pytest.approx(60 / tick)
    # a niced process does not get the cores of other niced work
    assert threads.others_cpu(before, after, 1.0, own_nice=5) == pytest.approx(260 / tick)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_busy_process_at_normal_priority_counts_and_a_niced_one_yields():
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(1.0)
        assert threads.busy_cores(samples=5, interval_s=0.1) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()
    niced = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", SPIN])
    try:
        time.sleep(1.0)
        busy = threads.busy_cores(samples=5, interval_s=0.1)
        # the runnable count alone would say >= 1 (the spinner); its CPU time is niced
        stat_before = threads._cpu_jiffies()
        time.sleep(0.5)
        normal_by_others = threads.others_cpu(stat_before, threads._cpu_jiffies(), 0.5, own_nice=0)
        assert busy <= normal_by_others + 0.5
    finally:
        niced.kill()
        niced.wait()
