"""The wheel is self-contained: built from the repository, installed into a fresh environment that
cannot see the source tree, it loads the grammars, finds the shipped default adapter and generates
a valid graph from a folder outside the repository.

The fresh environment is a venv without pip whose site-packages holds a `.pth` file naming the
folders the test interpreter imports its dependencies from (its site-packages, and the rest of its
sys.path but the folders that hold a `tracegrammar` package, such as `src/`). A plain path line
does not process the `.pth` files inside it, so the development install's editable finder is not
loaded there; the child process checks that `tracegrammar` really comes from the installed wheel. It generates with the
tiny test model (the shipped adapter fits only the real base, whose conversion takes ~30 s), but
the adapter it must find is the installed package's. CPU only, no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tracegrammar.decoding.driver import default_adapter_dir
from tracegrammar.grammar import grammar_dir
from tracegrammar.resources import shipped_adapter

ROOT = Path(__file__).resolve().parents[1]
#: What the build needs from the checkout (copied, so no build/ or egg-info lands in the tree
#: and no stale build/lib from an earlier build leaks into the wheel).
BUILD_INPUTS = ("pyproject.toml", "README.md", "src", "grammars", "adapters")
SHIPPED_ADAPTERS = ("default", "tabular")
#: Per adapter, what loading needs (the model card, loss curve and checkpoints stay out).
ADAPTER_DATA = ("*.json", "*.safetensors")
#: Environment that would point the child at the checkout instead of the installed package.
SCRUB = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "TRACEGRAMMAR_GRAMMARS",
    "TRACEGRAMMAR_ADAPTER",
)

CHILD = r"""
import json, sys
from pathlib import Path

venv = Path(sys.argv[1]).resolve()
tiny = sys.argv[2]
inside = lambda p: Path(p).resolve().is_relative_to(venv)

import tracegrammar as tg
assert inside(tg.__file__), f"tracegrammar imported from {tg.__file__}, not from {venv}"
assert not any("editable" in repr(f) for f in sys.meta_path), sys.meta_path

from tracegrammar.grammar import ENCODINGS, grammar_dir, grammar_text, parser
from tracegrammar.decoding.driver import default_adapter_dir
from tracegrammar.decoding.models import ADAPTER_META
from tracegrammar.decoding.prior import PRIOR_FILE, Prior

assert inside(grammar_dir()), grammar_dir()
for fmt in ENCODINGS:
    parser(fmt)

adapter = default_adapter_dir()
assert adapter is not None and inside(adapter), adapter
files = sorted(p.name for p in adapter.iterdir())
Prior.load(adapter / PRIOR_FILE)
shape = json.loads((adapter / ADAPTER_META).read_text())["base_shape"]
from safetensors import safe_open
with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
    lora_tensors = sum("lora_" in k for k in f.keys())
assert lora_tensors > 0

c = tg.Constraints("S_7", num_edges=4, depth=2)
model = tg.load_model(tiny, device="cpu")
graphs = tg.generate(c, n=1, seed=0, model=model)
assert len(graphs) == 1 and tg.check(graphs[0], c) == [], graphs
print(json.dumps({
    "package": tg.__file__, "grammars": str(grammar_dir()), "adapter": str(adapter),
    "adapter_files": files, "base_shape": shape, "edges": graphs[0].num_edges,
}))
"""


def test_checkout_reads_the_top_level_folders():
    """In a checkout (editable install or PYTHONPATH=src) the package data is the top-level
    grammars/ and adapters/ themselves, so edits there are live."""
    assert grammar_dir() == ROOT / "grammars"
    assert shipped_adapter("default") == default_adapter_dir() == ROOT / "adapters" / "default"
    for name in ("grammars", "adapters"):
        link = ROOT / "src" / "tracegrammar" / name
        assert link.is_symlink() and link.resolve() == ROOT / name, link


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "checkpoints")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(src),
        ],
        cwd=src,
    )
    (whl,) = out.glob("tracegrammar-*.whl")
    return whl


def test_wheel_holds_the_grammars_and_shipped_adapters(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"tracegrammar/grammars/{p.name}" for p in (ROOT / "grammars").glob("*.lark")}
    for adapter in SHIPPED_ADAPTERS:
        folder = ROOT / "adapters" / adapter
        assert (folder / "adapter_config.json").is_file(), folder
        want |= {
            f"tracegrammar/adapters/{adapter}/{p.name}"
            for pattern in ADAPTER_DATA
            for p in folder.glob(pattern)
        }
    assert "tracegrammar/grammars/common.lark" in want
    assert "tracegrammar/adapters/default/prior.json" in want
    assert want <= names, sorted(want - names)
    assert not [n for n in names if n.endswith((".png", ".csv", ".md"))]
    assert "tracegrammar/resources.py" in names


def test_installed_wheel_generates_outside_the_repository(wheel, tiny_model_dir, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=tmp_path,
        ).strip()
    )
    (site / "_tracegrammar_test_deps.pth").write_text("".join(f"{p}\n" for p in dependency_paths()))
    run(
        [
            str(python),
            "-I",
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            "--disable-pip-version-check",
            str(wheel),
        ],
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not elsewhere.resolve().is_relative_to(ROOT)
    script = elsewhere / "child.py"
    script.write_text(CHILD)
    result = json.loads(
        run([str(python), "-I", str(script), str(venv), str(tiny_model_dir)], cwd=elsewhere)
        .strip()
        .splitlines()[-1]
    )
    installed = site.resolve() / "tracegrammar"
    assert Path(result["package"]) == installed / "__init__.py"
    assert Path(result["grammars"]) == installed / "grammars"
    assert Path(result["adapter"]) == installed / "adapters" / "default"
    shipped = sorted(
        p.name for pattern in ADAPTER_DATA for p in (ROOT / "adapters" / "default").glob(pattern)
    )
    assert result["adapter_files"] == shipped
    assert result["base_shape"] == [576, 30, 49152]  # the adapter is the real base's
    assert result["edges"] == 4
    # the console script was installed too, and starts
    run([str(venv / "bin" / "tracegrammar"), "--help"], cwd=elsewhere)


def dependency_paths() -> list[str]:
    """The folders this interpreter imports the dependencies from (its site-packages first, then
    the rest of sys.path, e.g. folders a .pth file added), minus any that holds tracegrammar and
    any of the checkout's own folders (a virtual environment inside it is kept)."""
    paths = [*(sysconfig.get_paths()[k] for k in ("purelib", "platlib")), *sys.path]
    dirs = dict.fromkeys(Path(p).resolve() for p in paths if p and Path(p).is_dir())
    return [
        str(d)
        for d in dirs
        if not (d / "tracegrammar").exists()
        and not (d / "tracegrammar.py").exists()
        and not (d.is_relative_to(ROOT) and "site-packages" not in d.parts)
    ]


def run(cmd: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout
