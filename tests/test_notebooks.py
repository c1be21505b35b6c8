"""The research notebooks in ``examples/`` run top to bottom on the shipped small model.

Each notebook is executed by nbclient in a fresh kernel that runs this interpreter (a kernelspec
for ``sys.executable`` is installed into a temporary folder), in a temporary working directory,
with small settings from environment variables (``BTNK_NOTEBOOK_*``). The tests check that every
cell ran, a few printed results, that a committed notebook is stored executed with the outputs of its current
code (``make notebooks``), and that running it wrote nothing into the repository.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
ipykernel_kernelspec = pytest.importorskip("ipykernel.kernelspec")

from tests.notebook_outputs import DIGEST_KEY, source_digest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL = "btnk-notebook-test"

#: small settings for the test run (the notebooks' defaults are for reading them interactively)
SMALL = {
    "BTNK_NOTEBOOK_TIMESTEPS": "128",
    "BTNK_NOTEBOOK_EVAL_EPISODES": "2",
    "BTNK_NOTEBOOK_STEPS": "12",
    "OMP_NUM_THREADS": "1",
}
FLOAT = r"-?(?:\d+\.\d+|inf|nan)"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec that starts ``sys.executable -m ipykernel_launcher`` (this venv's Python)."""
    prefix = tmp_path_factory.mktemp("jupyter")
    ipykernel_kernelspec.install(kernel_name=KERNEL, display_name="btnk test", prefix=str(prefix))
    return prefix / "share" / "jupyter"


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts}


def run_notebook(path: Path, kernel_dir: Path, workdir: Path, monkeypatch) -> tuple[str, list[dict]]:
    """Execute ``path`` in ``workdir``; returns all stream/text output and the display outputs."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BTNK_NOTEBOOK_OUT", str(workdir / "out"))
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.argv[0] == sys.executable, f"kernel would run {spec.argv[0]}, not {sys.executable}"

    nb = nbformat.read(path, as_version=4)
    before = _snapshot(EXAMPLES)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    assert _snapshot(EXAMPLES) - before == set(), "the notebook wrote into examples/"

    text, displays = [], []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.get("execution_count") is not None, f"cell not executed:\n{cell.source}"
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                displays.append(out)
                text.append(out.data.get("text/plain", ""))
            assert out.output_type != "error", f"cell failed:\n{cell.source}\n{out}"
    return "".join(text), displays


def _images(displays: list[dict], mime: str = "image/png") -> int:
    return sum(mime in out.data for out in displays)


def test_three_notebooks_present():
    names = [p.name for p in NOTEBOOKS]
    for name in ("01_encode_and_reconstruct.ipynb", "02_wrap_env_and_train_agent.ipynb", "03_decode_imagined_rollout.ipynb"):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_executed(path):
    """Valid nbformat 4, a Python 3 kernel, stored executed top to bottom by ``make notebooks``
    (so GitHub and the docs site show the pictures): every code cell ran once, in order, without
    an error; the outputs belong to the current code cells (their digest); small; and no output
    names a folder of the machine it ran on."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: not executed top to bottom; run `make notebooks`")
    assert nb.metadata.get(DIGEST_KEY) == source_digest(nb), (
        f"{path.name}: a code cell changed since the outputs were stored; run `make notebooks`")
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"{path.name}: a stored cell failed:\n{cell.source}"
    assert path.stat().st_size < 800_000, f"{path.name}: {path.stat().st_size} bytes stored; keep pictures small"
    text = path.read_text()
    for folder in (str(ROOT), "/tmp/", "/home/"):
        assert folder not in text, f"{path.name}: an output names {folder}"


def test_encode_and_reconstruct(kernel_dir, tmp_path, monkeypatch):
    text, displays = run_notebook(EXAMPLES / "01_encode_and_reconstruct.ipynb", kernel_dir, tmp_path, monkeypatch)
    assert "-> latent (1, 192) -> reconstruction (1, 3, 128, 256)" in text
    assert re.search(rf"PSNR rendered panorama: {FLOAT} dB", text)
    habitat = ROOT.parent / "shared" / "images" / "habitat_pano" / "img_0.png"
    if habitat.is_file():
        assert re.search(rf"PSNR Habitat panorama: {FLOAT} dB", text)
    else:
        assert "no Habitat panorama" in text
    for size, grid in (((64, 128), (4, 8)), ((256, 512), (16, 32)), ((128, 128), (8, 8))):
        assert f"input {size}: grid {grid}, latent (1, 192)" in text
    assert "reloaded model gives the same latent: True" in text
    assert _images(displays) >= 3  # the panorama, input | reconstruction, the turning views


def test_wrap_env_and_train_agent(kernel_dir, tmp_path, monkeypatch):
    text, _ = run_notebook(EXAMPLES / "02_wrap_env_and_train_agent.ipynb", kernel_dir, tmp_path, monkeypatch)
    assert "wrapped observation (192,) float32" in text
    assert "check_env passed" in text
    assert "vector observation (4, 192) float32" in text
    assert f"PPO trained for {SMALL['BTNK_NOTEBOOK_TIMESTEPS']} steps" in text
    for name in ("random policy", "PPO"):
        assert re.search(rf"{name} +mean return +{FLOAT}", text), f"no evaluation line for {name}"
    assert "features_dim 192" in text


def test_decode_imagined_rollout(kernel_dir, tmp_path, monkeypatch):
    text, displays = run_notebook(EXAMPLES / "03_decode_imagined_rollout.ipynb", kernel_dir, tmp_path, monkeypatch)
    gifs = sorted((tmp_path / "out").glob("*.gif"))
    assert [p.name for p in gifs] == ["imagined_rollout.gif", "interpolation.gif"]
    assert all(p.stat().st_size > 1000 for p in gifs)
    assert _images(displays, "image/gif") == 2
    model_error, copy_error = map(float, re.search(rf"one-step latent error: model ({FLOAT}), copy-last baseline ({FLOAT})", text).groups())
    assert model_error < copy_error  # the shipped world model, not a copy of the last latent
    assert re.search(rf"mean PSNR context {FLOAT} dB, imagined {FLOAT} dB \(copy-last baseline {FLOAT} dB\)", text)
    assert "decoded rollout (2, 12, 128, 256, 3) uint8" in text
