"""Spawned collection workers that die or cannot build their environment say why."""

from __future__ import annotations

import os
import signal

import pytest

from btnk_env.collection import collect_panoramas
from btnk_env.collection import parallel
from btnk_env.collection.parallel import death_reason

SMALL = dict(seeds="0-3", frames_per_scene=2, height=16, progress=False, workers=2, format="shards", shard_size=2)


def segfaulting_env():
    """A factory whose process dies of SIGSEGV, as habitat-sim 0.2.2 under NumPy 2 did without a shim."""
    os.kill(os.getpid(), signal.SIGSEGV)


def failing_env():
    raise ValueError("scene 'nowhere.glb' does not exist")


def test_a_dead_worker_is_reported_with_its_signal(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "MAX_POOL_RESTARTS", 0)  # no second pool: the first death ends the collection
    with pytest.raises(RuntimeError, match=r"died 1 times \(last: killed by signal SIGSEGV \(exit code -11\)\)"):
        collect_panoramas(segfaulting_env, tmp_path / "out", 8, **SMALL)


def test_an_environment_that_fails_to_build_raises_its_own_error(tmp_path):
    with pytest.raises(ValueError, match="nowhere.glb"):
        collect_panoramas(failing_env, tmp_path / "out", 8, **SMALL)


def test_death_reason_names_the_signal_not_the_pools_sigterm():
    assert death_reason([-15, -6, None]) == "killed by signal SIGABRT (exit code -6)"
    assert death_reason([-15]) == "killed by signal SIGTERM (exit code -15)"
    assert death_reason([None, 0]) == "ended without an exit code"
