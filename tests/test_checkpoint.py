"""Loading is strict and safe: round trips, malicious pickles, corrupt files, mismatched keys,
and the Hugging Face Hub download path (with the Hub replaced by a local stand-in)."""

from __future__ import annotations

import hashlib
from pathlib import Path
import os
import shutil
from types import SimpleNamespace

import pytest
import torch

from btnk_env.models import BtnkMAE, CheckpointError, DownloadError
from btnk_env.models import hub
from btnk_env.models.checkpoint import load_file, to_original
from tests.conftest import GOLDEN

GOLDEN_NOACT = GOLDEN / "btnk_tiny_noact_64.pth"
HEADS = dict(num_heads=4, decoder_num_heads=4)


@torch.no_grad()
def test_save_pretrained_roundtrip_non_square(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".btnk-env-owned", "config.json", "model.safetensors"]
    loaded = BtnkMAE.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny_model.config and loaded.img_size == (32, 64)
    x = torch.randn(2, 3, 32, 64)
    assert torch.equal(loaded.reconstruct(x), tiny_model.reconstruct(x))
    # the .safetensors path works too
    assert BtnkMAE.from_pretrained(tmp_path / "m" / "model.safetensors").config == tiny_model.config


@torch.no_grad()
def test_original_format_roundtrip(tmp_path):
    model = BtnkMAE.from_pretrained(GOLDEN / "btnk_tiny_relu_64to128.pth", **HEADS)
    original = to_original(model.state_dict(), model.config)
    reference = torch.load(GOLDEN / "btnk_tiny_relu_64to128.pth", weights_only=False)
    for part in ("enc_model", "dec_model"):
        assert sorted(original[part]) == sorted(reference[part])
        for key, value in reference[part].items():
            assert torch.equal(original[part][key], value), key
    torch.save({**original, "model_config": model.config.to_dict()}, tmp_path / "ckpt.pth")
    again = BtnkMAE.from_pretrained(tmp_path / "ckpt.pth")
    x = torch.randn(1, 3, 128, 128)
    assert torch.equal(again.encode(x), model.encode(x))


def test_training_checkpoint_format_loads(tmp_path, tiny_model):
    torch.save({"model": tiny_model.state_dict(), "model_config": tiny_model.config.to_dict(), "epoch": 3},
               tmp_path / "train.pth")
    loaded = BtnkMAE.from_pretrained(tmp_path / "train.pth")
    assert loaded.config == tiny_model.config


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    good = torch.load(GOLDEN_NOACT, weights_only=False)
    good["cfg"] = _Payload(marker)
    torch.save(good, bad)
    with pytest.raises(CheckpointError, match=r"refusing to load .*(system|posix)"):
        BtnkMAE.from_pretrained(bad, **HEADS)
    assert not marker.exists()


def test_original_omegaconf_cfg_is_read_safely():
    obj = load_file(GOLDEN_NOACT)
    assert set(obj) >= {"enc_model", "dec_model", "cfg", "optimizer", "epoch"}


@pytest.mark.parametrize("corruption", ["truncated", "empty", "html"])
def test_corrupt_files_give_clear_errors(tmp_path, corruption):
    path = tmp_path / "btnk_mae_vit_base_224.pth"
    data = GOLDEN_NOACT.read_bytes()
    if corruption == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif corruption == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("<!DOCTYPE html><html><body>Hugging Face</body></html>")
    with pytest.raises(CheckpointError, match="truncated|empty|not a PyTorch checkpoint"):
        BtnkMAE.from_pretrained(path, **HEADS)


def test_corrupt_safetensors_gives_clear_error(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        BtnkMAE.from_pretrained(tmp_path)


def test_missing_unexpected_and_mis_shaped_keys_are_named(tmp_path):
    ck = torch.load(GOLDEN_NOACT, weights_only=False)
    del ck["dec_model"]["patch_recon.x_norm.bias"]
    ck["enc_model"]["mae_encoder.extra.weight"] = torch.zeros(2)
    ck["dec_model"]["mae_decoder.decoder_pred.bias"] = torch.zeros(5)
    ck.pop("cfg")
    torch.save(ck, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        BtnkMAE.from_pretrained(tmp_path / "bad.pth", **HEADS)
    message = str(info.value)
    assert "decoder.patch_recon.x_norm.bias" in message
    assert "encoder.extra.weight" in message
    assert "decoder.decoder_pred.bias: checkpoint (5,) vs model (768,)" in message


def test_non_standard_width_asks_for_head_count():
    with pytest.raises(CheckpointError, match=r"pass it: from_pretrained\(path, num_heads=\.\.\.\)"):
        BtnkMAE.from_pretrained(GOLDEN_NOACT)


def test_mae_checkpoint_given_to_from_pretrained_points_to_from_mae():
    with pytest.raises(CheckpointError, match="from_mae"):
        BtnkMAE.from_pretrained(GOLDEN / "mae_tiny_64.pth")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="btnk_mae_vit_base_224"):
        BtnkMAE.from_pretrained("no-such-model")


# ---------------------------------------------------------------------------- Hub download
class FakeHub:
    """Stands in for huggingface_hub: serves one file, or behaves as offline."""

    def __init__(self, tmp_path, payload: bytes, reported_sha: str | None, online: bool = True):
        self.cache = tmp_path / "hf-cache"
        self.cache.mkdir()
        self.payload, self.reported_sha, self.online = payload, reported_sha, online
        self.downloads = 0

    def hf_hub_url(self, repo_id, filename):
        return f"https://huggingface.co/{repo_id}/resolve/main/{filename}"

    def get_hf_file_metadata(self, url):
        if not self.online:
            raise ConnectionError("Failed to resolve 'huggingface.co'")
        return SimpleNamespace(etag=f'"{self.reported_sha}"' if self.reported_sha else None, size=len(self.payload))

    def hf_hub_download(self, repo_id, filename, cache_dir=None, local_files_only=False):
        path = self.cache / filename
        if local_files_only or not self.online:
            if not path.exists():
                raise FileNotFoundError("not in cache")
            return str(path)
        self.downloads += 1
        path.write_bytes(self.payload)
        return str(path)

    # the publishing side: repositories are folders of this stand-in
    def create_repo(self, repo_id, token=None, private=False, repo_type="model", exist_ok=False):
        self.repos = getattr(self, "repos", {})
        if repo_id in self.repos and not exist_ok:
            raise FileExistsError(repo_id)
        self.repos.setdefault(repo_id, {})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, token=None, repo_type="model", commit_message="", ignore_patterns=()):
        import fnmatch

        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()
                 if p.is_file() and not any(fnmatch.fnmatch(p.name, g) for g in ignore_patterns)}
        self.repos[repo_id].update(files)
        return f"https://huggingface.co/{repo_id}/commit/1"

    def snapshot_download(self, repo_id, cache_dir=None, local_files_only=False):
        folder = self.cache / "snapshots" / repo_id
        if local_files_only or not self.online:
            if not folder.is_dir():
                raise FileNotFoundError("not in cache")
            return str(folder)
        if repo_id not in getattr(self, "repos", {}):
            raise FileNotFoundError(f"404 {repo_id}")
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.repos[repo_id].items():
            (folder / name).write_bytes(data)
        return str(folder)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import huggingface_hub

    def install(payload, reported_sha, online=True):
        fake = FakeHub(tmp_path, payload, reported_sha, online)
        for name in ("hf_hub_url", "get_hf_file_metadata", "hf_hub_download", "create_repo", "upload_folder", "snapshot_download"):
            monkeypatch.setattr(huggingface_hub, name, getattr(fake, name))
        return fake

    return install


def test_release_download_verified_and_loaded(fake_hub):
    payload = GOLDEN_NOACT.read_bytes()
    fake = fake_hub(payload, hashlib.sha256(payload).hexdigest())
    model = BtnkMAE.from_pretrained("btnk_mae_vit_base_224", **HEADS)
    assert model.latent_dim == 64 and fake.downloads == 1


def test_release_with_wrong_sha_is_deleted(fake_hub):
    fake = fake_hub(GOLDEN_NOACT.read_bytes(), "0" * 64)
    with pytest.raises(DownloadError, match="does not match"):
        hub.download_release("btnk_mae_vit_large_relu_224")
    assert not (fake.cache / "btnk_mae_vit_large_relu_224.pth").exists()


def test_offline_without_cache_explains_what_to_do(fake_hub):
    fake_hub(b"", None, online=False)
    with pytest.raises(DownloadError) as info:
        BtnkMAE.from_pretrained("btnk_mae_vit_base_224.pth")
    message = str(info.value)
    assert "/resolve/main/btnk_mae_vit_base_224.pth" in message and "from_pretrained('/path/to/" in message


def test_offline_with_cached_copy_uses_it(fake_hub):
    fake = fake_hub(b"", None, online=False)
    shutil.copy(GOLDEN_NOACT, fake.cache / "btnk_mae_vit_base_224.pth")
    assert hub.download_release("btnk_mae_vit_base_224").name == "btnk_mae_vit_base_224.pth"


def test_real_hub_client_offline_mode_gives_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="cannot reach the Hugging Face Hub"):
        hub.download_release("btnk_mae_vit_base_224", cache_dir=tmp_path)


def test_push_to_hub_and_read_back(fake_hub, tiny_model):
    from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics

    fake = fake_hub(b"", None)
    url = tiny_model.push_to_hub("me/rooms-encoder", training_data="100 episodes of btnk_env/PanoramaRooms-v0 (single_room)",
                                 commands=["btnk-env train --config finetune_rooms_cpu data.path=data/rooms_shards"],
                                 evaluation={"PSNR (dB)": 21.5})
    assert url.endswith("/commit/1")
    files = fake.repos["me/rooms-encoder"]
    assert set(files) == {"config.json", "model.safetensors", "README.md"}  # no ownership marker uploaded
    card = files["README.md"].decode()
    assert "library_name: btnk-env" in card and "100 episodes of btnk_env/PanoramaRooms-v0" in card
    assert "btnk-env train --config finetune_rooms_cpu" in card and "| PSNR (dB) | 21.5 |" in card
    assert hashlib.sha256(files["model.safetensors"]).hexdigest() in card
    back = BtnkMAE.from_pretrained("hf:me/rooms-encoder")
    assert back.config == tiny_model.config
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), tiny_model.state_dict().values()))

    dyn = LatentDynamics(DynamicsConfig(latent_dim=8, num_actions=3, width=16, depth=1, heads=2)).eval()
    dyn.push_to_hub("me/rooms-dynamics", description="a test world model")
    assert "a test world model" in fake.repos["me/rooms-dynamics"]["README.md"].decode()
    again = LatentDynamics.from_pretrained("hf:me/rooms-dynamics")
    assert again.config == dyn.config
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), dyn.state_dict().values()))
    fake.online = False  # offline: the cached snapshot
    assert LatentDynamics.from_pretrained("hf:me/rooms-dynamics").config == dyn.config
    with pytest.raises(Exception, match="hf:owner/name"):
        BtnkMAE.from_pretrained("hf:../x")
