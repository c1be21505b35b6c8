"""Shared test fixtures: where ``shared/`` lies, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
#: ``shared/`` beside the checkout (reference checkpoints and real images); BTNK_SHARED overrides.
SHARED = Path(os.environ.get("BTNK_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
IMAGES = SHARED / "images"

torch.set_num_threads(min(2, torch.get_num_threads()))
if os.environ.get("BTNK_ENGINE_TESTS") != "1":
    # backend="auto" may route a cell to an engine (btnk_env.models.backends.MEASURED_FASTEST); the suite's
    # own process must never load one (see ENGINE_MODULES), so its defaults run the torch path
    os.environ.setdefault("BTNK_BACKEND", "torch")


def require_shared(path: Path) -> Path:
    """``path`` inside ``shared/``, or a loud test failure: the suite's one rule for ``shared/``
    (CI always has it; a missing one is a broken setup, not a reason to skip)."""
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need the shared/ folder beside the checkout "
                    f"(or BTNK_SHARED=/path/to/shared)", pytrace=False)
    return path


@pytest.fixture
def needs_golden():
    """Fail loudly when ``shared/golden`` is missing (see :func:`require_shared`)."""
    return require_shared(GOLDEN)


@pytest.fixture
def bf16_anywhere(monkeypatch):
    """bf16 inference really runs bf16 in this test, on any CPU: ``for_inference(precision="bf16")``
    runs fp32 on a CPU without bf16 matrix units, so the tier is made to claim them (the matmuls
    then take PyTorch's slow reference kernel: tiny models only)."""
    import dataclasses

    from btnk_env.models import precision
    from btnk_env.models.hardware import cpu_tier

    monkeypatch.setattr(precision, "cpu_tier", lambda: dataclasses.replace(cpu_tier(), bf16_units=True))


@pytest.fixture
def tiny_model():
    """A deterministic ``test``-preset model (D=64) at 32x64, in eval mode."""
    from btnk_env.models import BtnkMAE

    torch.manual_seed(0)
    return BtnkMAE("test", img_size=(32, 64)).eval()


@pytest.fixture(autouse=True)
def _sb3_logs_in_tmp(tmp_path, monkeypatch):
    """stable-baselines3 makes an (empty) log folder in the system temp dir for every model; keep it in tmp_path."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3"))


#: Test modules that build ONNX Runtime / OpenVINO engines in the test process. Their thread pools do not
#: survive the rest of the suite in one process (forked DataLoader workers before or after them segfaulted
#: it), so the suite's process skips them and tests/test_engines_isolated.py runs them in a fresh process
#: (BTNK_ENGINE_TESTS=1). The hazard itself is documented in docs/speed.md.
ENGINE_MODULES = ("tests/test_backends.py", "tests/test_benchmarks.py")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("BTNK_ENGINE_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="runs in its own process: tests/test_engines_isolated.py")
    for item in items:
        if item.nodeid.split("::")[0] in ENGINE_MODULES:
            item.add_marker(skip)
