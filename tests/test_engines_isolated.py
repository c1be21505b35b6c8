"""The tests that build ONNX Runtime / OpenVINO engines run in a process of their own.

Those engines' thread pools do not survive what the rest of the suite does in one process (forked
``DataLoader`` workers before or after them): the test process segfaulted (exit 139) with them
inside it. So the suite's own process never loads an engine; this test runs their modules in a
fresh ``python -m pytest`` and fails with its output when any of them fails. The hazard for users is
documented in docs/speed.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ENGINE_MODULES, ROOT


def test_engine_tests_pass_in_their_own_process():
    env = {**os.environ, "BTNK_ENGINE_TESTS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ENGINE_MODULES],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]
