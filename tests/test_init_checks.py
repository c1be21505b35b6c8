"""Finetuning: the checkpoint's stored architecture wins or the run stops before any work
(act_fn, preset, head counts, patch multiples, each named with both values and the fix); a
warm-up as long as the run is an error. The recipe of the issue (finetune_pano_native.yaml on
the shipped model) stops naming act_fn and preset; with them removed it finetunes as stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from btnk_env.models import BtnkMAE
from tests.test_training_helpers import golden_config, make_images
from btnk_env.training.config import ConfigError, load_config
from btnk_env.training.trainer import Trainer, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _shipped(data, out, *overrides):
    return load_config(CONFIGS / "finetune_pano_native.yaml", overrides=[
        f"data.path={data}", f"io.out_dir={out}", "model.init=pretrained:panorama-rooms-small", "model.img_size=[128,256]",
        "train.batch_size=2", "train.accum_iter=1", "train.epochs=1", "train.precision=fp32", "train.device=cpu",
        "data.num_workers=0", "io.snapshot_every=null", "io.progress=false", *overrides,
    ])


def test_recipe_that_disagrees_with_the_shipped_model_stops_before_any_work(tmp_path):
    data = tmp_path / "data"
    make_images(data, n=4, size=(128, 256))
    with pytest.raises(ConfigError) as err:
        Trainer(_shipped(data, tmp_path / "run", "optim.warmup_epochs=0"))
    msg = str(err.value)
    assert "model.act_fn=relu but the checkpoint has act_fn=None" in msg
    assert "model.preset=large but the checkpoint's architecture differs (embed_dim 1024 vs 192" in msg
    assert "model.preset=null model.act_fn=null" in msg  # the fix
    assert not (tmp_path / "run" / "final").exists() and not list((tmp_path / "run").glob("checkpoint-*"))


def test_stored_architecture_is_kept_when_the_keys_are_unset(tmp_path):
    data = tmp_path / "data"
    make_images(data, n=4, size=(128, 256))
    cfg = _shipped(data, tmp_path / "run", "model.preset=null", "model.act_fn=null", "optim.warmup_epochs=0",
                   "train.max_steps=1")
    result = train(cfg)
    assert BtnkMAE.from_pretrained(result.final_dir).config == BtnkMAE.from_pretrained("panorama-rooms-small").config


@pytest.mark.parametrize("override, named", [
    ("model.num_heads=8", "model.num_heads=8 but the checkpoint has num_heads=4"),
    ("model.img_size=[40,40]", "multiples of it"),
    ("model.preset=test", None),  # the test preset is this architecture: fine
])
def test_head_counts_and_sizes_against_a_saved_model(tmp_path, tiny_model, override, named):
    tiny_model.save_pretrained(tmp_path / "m")
    data = tmp_path / "data"
    make_images(data, n=4, size=(64, 64))
    cfg = golden_config(data, tmp_path / "run", f"model.init=pretrained:{tmp_path / 'm'}", "model.num_heads=null",
                        "model.decoder_num_heads=null", override)
    if named is None:
        Trainer(cfg).close()
        return
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        Trainer(cfg)


def test_warmup_as_long_as_the_run_is_an_error(tmp_path):
    data = tmp_path / "data"
    make_images(data, n=8)
    with pytest.raises(ConfigError, match=r"warm-up is 60 optimizer steps \(optim.warmup_epochs=30.0 x 2 steps per epoch\) "
                                          r"but the whole run is 6 steps"):
        Trainer(golden_config(data, tmp_path / "run", "optim.warmup_epochs=30"))
    with pytest.raises(ConfigError, match="optim.warmup_iters=6"):
        Trainer(golden_config(data, tmp_path / "run2", "optim.warmup_iters=6"))
    Trainer(golden_config(data, tmp_path / "run3", "optim.warmup_iters=5")).close()  # shorter than the run: fine
