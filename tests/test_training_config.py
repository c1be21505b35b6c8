"""Configs: the YAML files are views of the dataclasses; typos and bad values are named errors."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT
from btnk_env.training.cli import add_arguments, run
from btnk_env.training.config import ConfigError, TrainConfig, from_dict, load_config, to_dict

# dynamics_*: tests/test_dynamics.py; goal_distance_*: their own schema, below
YAMLS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith(("dynamics_", "goal_distance_")))


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("goal_distance_*.yaml")), ids=lambda p: p.name)
def test_goal_distance_yamls_load_against_their_schema(path):
    from btnk_env.training.goal_distance import GoalDistanceTrainConfig

    merged = OmegaConf.merge(OmegaConf.structured(GoalDistanceTrainConfig), OmegaConf.load(path))  # a typo raises
    assert set(merged.keys()) == set(OmegaConf.structured(GoalDistanceTrainConfig).keys())


def test_there_are_the_recipes():
    names = {p.stem for p in YAMLS}
    assert {"train_from_mae", "finetune_pano", "finetune_pano_native"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_yaml_loads_against_the_schema(path):
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    assert set(merged.keys()) == {"model", "data", "optim", "train", "io", "dist"}
    cfg = load_config(path, ["data.path=somewhere"])
    assert from_dict(to_dict(cfg)) == cfg


def test_panorama_recipes():
    squash = load_config(ROOT / "configs" / "finetune_pano.yaml", ["data.path=x"])
    native = load_config(ROOT / "configs" / "finetune_pano_native.yaml", ["data.path=x"])
    assert squash.model.img_hw == (512, 512) and native.model.img_hw == (256, 512)
    assert squash.optim.blr == 1e-4 and squash.train.accum_iter == 16 and squash.model.act_fn == "relu"


def test_dotlist_overrides():
    cfg = load_config(ROOT / "configs" / "smoke_cpu.yaml", ["data.path=x", "train.batch_size=64", "optim.blr=1e-4",
                                                            "model.img_size=[32,64]"])
    assert (cfg.train.batch_size, cfg.optim.blr, cfg.model.img_hw) == (64, 1e-4, (32, 64))


def test_typo_in_override_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.bl'.*'blr'"):
        load_config(overrides=["data.path=x", "optim.bl=1e-4"])


def test_typo_in_yaml_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_sise: 8\ndata:\n  path: x\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.batch_sise' in .*bad\.yaml"):
        load_config(bad)


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=abc", r"bad value for 'train\.batch_size'"),
    ("train.precision=fp8", r"train\.precision must be one of"),
    ("model.init=weights.pth", r"model\.init must be"),
    ("data.crop_scale=[0.5,0.2]", r"data\.crop_scale"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=["data.path=x", override])


def test_missing_data_path():
    with pytest.raises(ConfigError, match=r"data\.path must be set"):
        load_config(ROOT / "configs" / "finetune_pano.yaml")


def test_cli_reports_a_typo_with_exit_status_2(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    from btnk_env.models.errors import run_cli

    assert run_cli(run, parser.parse_args(["data.path=x", "train.epoch=3"]), "btnk-env train") == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err
