"""Training streams shard sets: disjoint shards per rank and worker, equal batch counts, exact
resume, a two-process torchrun epoch, and a few optimizer steps from shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from btnk_env import formats as F
from btnk_env.formats.shards import ShardWriter
from tests.conftest import ROOT
from tests.test_training_helpers import GOLDEN_NOACT, dataset_loss, golden_config, make_images
from btnk_env.training.datasets import DatasetError, build_dataset


def make_shards(root, n, shard_size, size=(16, 32), seed=0):
    """A shard set of ``n`` smooth random images, ``shard_size`` per shard."""
    rng = np.random.default_rng(seed)
    with ShardWriter(root, image_size=size, max_count=shard_size) as w:
        for i in range(n):
            img = (rng.uniform(0, 1, (1, 1, 3)) * np.linspace(0.2, 1, size[1])[None, :, None] * 255).astype(np.uint8)
            w.write(F.sample_key(i), np.broadcast_to(img, (*size, 3)).copy(), {"index": i})
    return root


def stream_batches(ds, epoch, start=0):
    ds.set_epoch(epoch, start)
    out = []
    for images, skipped in ds.loader():
        assert not skipped and images.shape[1:] == (3, 16, 32)
        out.append(images)
    return out


def test_ranks_and_workers_read_disjoint_shards_with_equal_batch_counts(tmp_path):
    root = make_shards(tmp_path / "s", 45, 7)  # 7 shards: six of 7, one of 3 (uneven)
    seen, counts = [], []
    for rank in range(2):
        ds = build_dataset(str(root), (16, 32))
        ds.configure(batch_size=2, world_size=2, rank=rank, seed=3, num_workers=2)
        shards = [set(ds.slot_shards(1, rank, w)) for w in range(2)]
        assert not shards[0] & shards[1]
        seen.append(shards[0] | shards[1])
        batches = stream_batches(ds, epoch=1)
        counts.append(len(batches))
        assert len(batches) == ds.batches_per_epoch
    assert not seen[0] & seen[1] and seen[0] | seen[1] <= set(range(7))
    assert counts[0] == counts[1] == 2 * (3 // 2)  # slots get >= 1 shard; the smallest holds 3 samples


def test_resume_mid_epoch_is_exact_with_dataloader_workers(tmp_path):
    root = make_shards(tmp_path / "s", 48, 6)
    ds = build_dataset(str(root), (16, 32), transform="random_resized_crop")
    ds.configure(batch_size=3, world_size=1, rank=0, seed=5, num_workers=2)
    full = stream_batches(ds, epoch=2)
    assert len(full) == ds.batches_per_epoch == 16
    for start in (1, 5):
        resumed = stream_batches(ds, epoch=2, start=start)
        assert len(resumed) == len(full) - start
        assert all(torch.equal(a, b) for a, b in zip(resumed, full[start:]))
    other = stream_batches(ds, epoch=3)
    assert not torch.equal(torch.cat(other), torch.cat(full))  # each epoch has its own order


SCRIPT = r"""
import json, os, sys
import torch, torch.distributed as dist
import btnk_env.training.shard_stream as S
from btnk_env.training.datasets import build_dataset

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
ds = build_dataset(sys.argv[1], (16, 32))
ds.configure(batch_size=2, world_size=world, rank=rank, seed=0, num_workers=2)
ds.set_epoch(0)
keys, n = [], 0
orig = S.collate_skip
S.collate_skip = lambda items: (orig(items)[0], [k for _, k in items])  # keys instead of skipped keys
for images, batch_keys in ds.loader():
    t = torch.ones(1)
    dist.all_reduce(t)  # a DDP step: would hang if the ranks ran different batch counts
    keys += [k.rsplit(":", 1)[1] for k in batch_keys]
    n += 1
dist.barrier()
json.dump({"batches": n, "keys": keys}, open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w"))
dist.destroy_process_group()
"""


def test_two_process_torchrun_epoch_sees_every_sample_once(tmp_path):
    root = make_shards(tmp_path / "s", 32, 4)  # 8 shards of 4: 2 per (rank, worker) slot, 2 batches of 2 each
    script = tmp_path / "epoch.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(root), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["batches"] == ranks[1]["batches"] == 8
    keys = ranks[0]["keys"] + ranks[1]["keys"]
    assert sorted(keys) == [F.sample_key(i) for i in range(32)]  # every sample once across the ranks



@pytest.mark.skipif(not GOLDEN_NOACT.is_file(), reason="shared/golden not found")
def test_training_a_few_steps_from_shards_lowers_the_loss(tmp_path):
    from btnk_env.collection.convert import convert
    from btnk_env.models import BtnkMAE
    from btnk_env.training import train

    folder = tmp_path / "imgs"
    make_images(folder, n=8)
    shards = convert(folder, tmp_path / "shards", shard_size=2)
    before = dataset_loss(BtnkMAE.from_pretrained(GOLDEN_NOACT, num_heads=4, decoder_num_heads=4), folder)
    rows = []
    result = train(golden_config(shards, tmp_path / "run", "train.epochs=5", "optim.lr=3e-3"),
                   hooks=[lambda trainer, row: rows.append(row)])
    assert result.step == 10 and all(r["images"] == 4 for r in rows)  # 8 samples / batch 4 = 2 steps per epoch
    model = BtnkMAE.from_pretrained(result.final_dir)
    after = dataset_loss(model, folder)
    assert after < 0.9 * before, (before, after)
    assert rows[-1]["loss"] < rows[0]["loss"]
    # evaluation reads a shard set in index order, every sample once, like the folder it came from
    from btnk_env.training.evaluate import evaluate

    on_shards = evaluate(model, build_dataset(str(shards), model.img_size, transform="resize"), batch_size=3)
    on_folder = evaluate(model, build_dataset(str(folder), model.img_size, transform="resize"), batch_size=3)
    assert on_shards.n_images == 8 and on_shards.psnr == pytest.approx(on_folder.psnr, abs=1e-4)


def test_damaged_shard_sets_cost_their_shards_or_are_clear_errors(tmp_path):
    root = make_shards(tmp_path / "s", 8, 4)
    (root / F.shard_name(1)).rename(tmp_path / "away.tar")
    assert len(build_dataset(str(root), (16, 32))) == 4  # a missing shard costs its own samples alone
    (root / F.shard_name(0)).rename(tmp_path / "away0.tar")
    with pytest.raises(DatasetError, match="lists no intact shards"):
        build_dataset(str(root), (16, 32))
    (tmp_path / "away0.tar").rename(root / F.shard_name(0))
    (tmp_path / "away.tar").rename(root / F.shard_name(1))
    index = json.loads((root / F.INDEX).read_text())
    index["image_size"] = [32, 64]  # a shard set whose images differ from its index
    (root / F.INDEX).write_text(json.dumps(index))
    ds = build_dataset(str(root), (16, 32))
    ds.configure(batch_size=2)
    with pytest.raises(DatasetError, match="is 16x32, its index says 32x64"):
        next(iter(ds.loader()))
    with pytest.raises(DatasetError, match="2 shards for 2 processes x 2 DataLoader workers"):
        ds.configure(batch_size=2, world_size=2, num_workers=2)
    # a brace pattern names the same set
    ds = build_dataset(str(root / "shard-{000000..000001}.tar"), (16, 32))
    assert len(ds) == 8
