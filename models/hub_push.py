"""Publishing a trained model on the Hugging Face Hub, and reading it back.

:func:`push_to_hub` writes the model's ``save_pretrained`` folder (``model.safetensors`` and
``config.json``) plus a generated ``README.md`` model card (architecture, the training data, the
commands that made it, its evaluation) into a Hub model repository through ``huggingface_hub``
(``create_repo`` + ``upload_folder``). :func:`download_repo` fetches such a repository
(``snapshot_download``); ``BtnkMAE.from_pretrained("hf:owner/name")`` and
``LatentDynamics.from_pretrained("hf:owner/name")`` load it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.files import OWNER_MARKER
from btnk_env.models.hub import DownloadError, sha256_file

__all__ = ["HUB_PREFIX", "download_repo", "model_card", "push_to_hub", "repo_id_of"]

HUB_PREFIX = "hf:"
"""``from_pretrained`` names starting with this are Hub model repositories: ``hf:owner/name``."""
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def repo_id_of(name: str) -> Optional[str]:
    """``owner/name`` of an ``hf:owner/name`` name (checked), ``None`` for other names."""
    if not str(name).startswith(HUB_PREFIX):
        return None
    repo_id = str(name)[len(HUB_PREFIX):]
    if not _REPO.match(repo_id):
        raise BtnkEnvError(f"{name!r}: a Hub model is named hf:owner/name (letters, digits, '_', '.', '-')")
    return repo_id


def model_card(kind: str, config: Mapping[str, Any], weights_sha256: str, *, repo_id: str,
               training_data: Optional[str] = None, commands: Sequence[str] = (),
               evaluation: Union[str, Mapping[str, Any], None] = None, description: Optional[str] = None) -> str:
    """The ``README.md`` of a pushed model: Hub front matter, what it is, how to load it, its
    config, the training data, the commands and the evaluation (``"not given"`` where unknown)."""
    loader = {"btnk_mae": "from models import BtnkMAE\nmodel = BtnkMAE.from_pretrained",
              "latent_dynamics": "from btnk_env.models.dynamics import LatentDynamics\nmodel = LatentDynamics.from_pretrained"}[kind]
    if isinstance(evaluation, Mapping):
        evaluation = "\n".join(f"| {k} | {v} |" for k, v in evaluation.items())
        evaluation = "| metric | value |\n|---|---|\n" + evaluation
    lines = [
        "---", "library_name: btnk-env", "tags:", "- btnk-env", f"- {kind.replace('_', '-')}", "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        description or ("A bottleneck MAE (image -> one latent vector -> image) trained with btnk-env."
                        if kind == "btnk_mae" else "A latent dynamics model (world model) trained with btnk-env."),
        "", "## Load", "", "```python", f'{loader}("{HUB_PREFIX}{repo_id}")', "```", "",
        "## Config", "", "```json", json.dumps(dict(config), indent=2, default=str), "```", "",
        f"Weights: `model.safetensors`, sha256 `{weights_sha256}`.", "",
        "## Training data", "", training_data or "not given", "",
        "## Commands", "", *(["```bash", *commands, "```"] if commands else ["not given"]), "",
        "## Evaluation", "", evaluation or "not given", "",
    ]
    return "\n".join(lines)


def push_to_hub(model: Any, repo_id: str, *, kind: str, training_data: Optional[str] = None,
                commands: Sequence[str] = (), evaluation: Union[str, Mapping[str, Any], None] = None,
                description: Optional[str] = None, private: bool = False, token: Optional[str] = None,
                commit_message: str = "Upload with btnk-env") -> str:
    """Upload ``model`` (a ``BtnkMAE`` or ``LatentDynamics``; ``kind``: ``"btnk_mae"`` or
    ``"latent_dynamics"``) to the Hub model repository ``repo_id`` (created if missing), with a
    generated model card; returns what ``upload_folder`` returns (the commit's URL)."""
    if not _REPO.match(str(repo_id)):
        raise BtnkEnvError(f"repo_id must be owner/name, got {repo_id!r}")
    try:
        import huggingface_hub as hf
    except ImportError as err:  # pragma: no cover - a dependency
        raise BtnkEnvError("push_to_hub needs huggingface_hub: pip install huggingface_hub") from err
    with tempfile.TemporaryDirectory(prefix="btnk-push-") as tmp:
        folder = Path(model.save_pretrained(Path(tmp) / "model"))
        config = json.loads((folder / "config.json").read_text())
        card = model_card(kind, config.get("config", config), sha256_file(folder / "model.safetensors"), repo_id=repo_id,
                          training_data=training_data, commands=commands, evaluation=evaluation, description=description)
        (folder / "README.md").write_text(card)
        hf.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        return hf.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, repo_type="model",
                                commit_message=commit_message, ignore_patterns=[OWNER_MARKER])


def download_repo(repo_id: str, cache_dir: "str | os.PathLike[str] | None" = None) -> Path:
    """The local folder of Hub model repository ``repo_id`` (downloaded, or the cached copy offline)."""
    import huggingface_hub as hf

    try:
        return Path(hf.snapshot_download(repo_id, cache_dir=cache_dir))
    except Exception as err:  # offline, unknown repo, HTTP errors
        try:
            return Path(hf.snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
        except Exception:
            raise DownloadError(f"cannot download the Hub model {repo_id!r} ({type(err).__name__}: {str(err)[:160]}) "
                                f"and it is not in the local cache") from None
