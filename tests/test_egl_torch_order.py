"""A process that renders the built-in world and then builds a torch optimizer must not crash.

Mesa's llvmpipe and PyTorch's triton each load an LLVM; the renderer loads PyTorch's first.
The check runs in a fresh interpreter, where nothing else has imported ``torch._dynamo`` yet.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import torch, gymnasium as gym, btnk_env
env = gym.make("btnk_env/PanoramaRooms-v0", height=32)
env.reset(seed=0)
torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=0.1)
print("ok")
"""


def test_optimizer_after_rendering_does_not_crash():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-500:]}"
    assert result.stdout.strip() == "ok"
