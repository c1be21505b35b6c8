"""Two processes (torchrun, Gloo on CPU) compute what one process computes with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from btnk_env.models import BtnkMAE
from tests.conftest import ROOT
from tests.test_training_helpers import GOLDEN_NOACT, golden_config, make_images, state_max_diff
from btnk_env.training import train

pytestmark = pytest.mark.usefixtures("needs_golden")  # a missing shared/ fails loudly

# dropout off: one process draws one mask for 4 images, two draw two masks of 2 (not comparable)
COMMON = ("train.epochs=2", "model.dropout=0.0", "train.accum_iter=2", "optim.warmup_iters=1", "train.device=cpu", "optim.lr=2e-4")


def test_two_process_gloo_run_equals_one_process(tmp_path):
    data = tmp_path / "imgs"
    make_images(data, n=12)
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "btnk_env.training",
           f"data.path={data}", f"io.out_dir={two}", f"model.init=pretrained:{GOLDEN_NOACT}", "model.num_heads=4",
           "model.decoder_num_heads=4", "model.img_size=[64,64]", "data.transform=resize",
           "io.log_every=1", "io.snapshot_every=null", "train.batch_size=1", *COMMON]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one process, micro-batch 2 = the two ranks' micro-batches of 1 together
    one = train(golden_config(data, tmp_path / "one", "train.batch_size=2", *COMMON))
    assert one.step == 6  # 12 images / (2 x 2 accumulated) = 3 steps per epoch
    a = BtnkMAE.from_pretrained(one.final_dir).state_dict()
    b = BtnkMAE.from_pretrained(two / "final").state_dict()
    assert state_max_diff(a, b) < 1e-5
    start = BtnkMAE.from_pretrained(GOLDEN_NOACT, num_heads=4, decoder_num_heads=4).state_dict()
    assert state_max_diff(a, start) > 3e-4  # the weights moved far more than the tolerance
    rows_one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows_two = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one]
    for r1, r2 in zip(rows_one, rows_two):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-5) and r2["images"] == r1["images"] == 4
    # rank 0 alone writes: one metrics file, one set of checkpoints
    assert sorted(p.name for p in two.iterdir() if p.suffix == ".pth") == [
        "checkpoint-epoch0001.pth", "checkpoint-epoch0002.pth", "checkpoint-latest.pth"]
