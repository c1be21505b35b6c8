"""The finetune loop: real optimizer steps, exact resume, crashes, new image sizes."""

from __future__ import annotations

import json

import pytest
import torch

from btnk_env.models import BtnkMAE
from tests.test_training_helpers import GOLDEN_NOACT, dataset_loss, golden_config, make_images, state_max_diff
from btnk_env.training import NonFiniteLossError, train
from btnk_env.training.checkpointing import LATEST, load_checkpoint

pytestmark = pytest.mark.usefixtures("needs_golden")  # a missing shared/ fails loudly


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    make_images(folder, n=8)
    return folder


def test_steps_from_golden_lower_the_loss(data, tmp_path):
    before = dataset_loss(BtnkMAE.from_pretrained(GOLDEN_NOACT, num_heads=4, decoder_num_heads=4), data)
    cfg = golden_config(data, tmp_path / "run", "train.epochs=6", "io.snapshot_every=6", "optim.lr=3e-3")
    result = train(cfg)
    assert result.step == 12  # 8 images / batch 4 = 2 steps per epoch
    after = dataset_loss(BtnkMAE.from_pretrained(result.final_dir), data)
    assert after < 0.9 * before, (before, after)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows[-1]["loss"] < rows[0]["loss"] and "loss_full_mae" in rows[0]
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("step,")
    assert sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir()) == ["step0000006.png", "step0000012.png"]
    # the training checkpoint itself loads as a model, with the trained weights
    ckpt_model = BtnkMAE.from_pretrained(tmp_path / "run" / LATEST)
    assert state_max_diff(ckpt_model.state_dict(), BtnkMAE.from_pretrained(result.final_dir).state_dict()) == 0


class _Crash(Exception):
    pass


def _crash_at(step):
    def hook(trainer, row):
        if row["step"] == step:
            raise _Crash
    return hook


def test_kill_and_resume_matches_uninterrupted_run(data, tmp_path):
    # dropout stays on (0.1): the restored RNG state must reproduce its masks; accumulation 2, warm-up on
    common = ("train.epochs=2", "train.batch_size=1", "train.accum_iter=2", "optim.warmup_iters=2")
    full = train(golden_config(data, tmp_path / "full", *common))
    assert full.step == 8  # 4 steps per epoch
    # killed during step 7; the last checkpoint is step 6, in the middle of the second epoch
    killed = golden_config(data, tmp_path / "killed", *common, "io.save_every_steps=3", "io.save_every=100")
    with pytest.raises(_Crash):
        train(killed, hooks=[_crash_at(7)])
    saved = load_checkpoint(tmp_path / "killed" / LATEST)
    assert saved["step"] == 6 and saved["epoch"] == 1
    resumed = train(golden_config(data, tmp_path / "killed", *common, "train.resume=auto"))
    assert resumed.step == 8
    a = BtnkMAE.from_pretrained(full.final_dir).state_dict()
    b = BtnkMAE.from_pretrained(resumed.final_dir).state_dict()
    assert state_max_diff(a, b) <= 1e-6
    # and the optimizer moments agree too
    oa, ob = load_checkpoint(tmp_path / "full" / LATEST)["optimizer"], load_checkpoint(tmp_path / "killed" / LATEST)["optimizer"]
    for k in oa["state"]:
        assert torch.allclose(oa["state"][k]["exp_avg_sq"], ob["state"][k]["exp_avg_sq"], atol=1e-9)


def test_non_finite_loss_stops_with_a_crash_checkpoint(data, tmp_path):
    def poison(trainer, row):
        if row["step"] == 2:
            with torch.no_grad():
                trainer.model.decoder.decoder_pred.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 .*loss_btnk=nan"):
        train(golden_config(data, tmp_path / "run"), hooks=[poison])
    crash = load_checkpoint(tmp_path / "run" / "checkpoint-crash.pth")
    assert crash["step"] == 2


def test_resume_at_a_new_image_size(data, tmp_path):
    first = train(golden_config(data, tmp_path / "run", "train.epochs=1"))
    cfg = golden_config(data, tmp_path / "run2", "train.epochs=1", f"train.resume={first.out_dir / LATEST}",
                        "model.img_size=[64,128]")
    result = train(cfg)
    model = BtnkMAE.from_pretrained(result.final_dir)
    assert model.img_size == (64, 128) and result.step == 2
    assert load_checkpoint(tmp_path / "run2" / LATEST)["model_config"]["img_size"] == [64, 128]


def test_bf16_on_cpu_and_fp16_needs_cuda(data, tmp_path):
    result = train(golden_config(data, tmp_path / "bf16", "train.epochs=1", "train.precision=bf16", "train.device=cpu",
                                 "train.norm_pix_loss=true", "optim.clip_grad=1.0"))
    assert result.step == 2 and all(torch.isfinite(torch.tensor(result.last_metrics[k])) for k in ("loss", "grad_norm"))
    start = BtnkMAE.from_pretrained(GOLDEN_NOACT, num_heads=4, decoder_num_heads=4).state_dict()
    assert state_max_diff(start, BtnkMAE.from_pretrained(result.final_dir).state_dict()) > 1e-4
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        train(golden_config(data, tmp_path / "fp16", "train.precision=fp16", "train.device=cpu"))


def test_tensorboard_events_are_written_when_asked(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(golden_config(data, tmp_path / "tb", "train.epochs=1", "io.tensorboard=true"))
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "loss" in " ".join(acc.Tags()["scalars"]) and result.step == 2
