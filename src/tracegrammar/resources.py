"""Package data: the grammars and the shipped adapters, found through `importlib.resources`.

In the repository they live at the top level (`grammars/`, `adapters/`);
`src/tracegrammar/grammars` and `src/tracegrammar/adapters` are symbolic links to them. So an
editable install reads the top-level files as they are edited, and a built wheel copies them in
as package data (`[tool.setuptools.package-data]` in pyproject.toml: the `*.lark` grammars and
each shipped adapter's `*.json` and `*.safetensors`). Nothing else locates them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_data(*parts: str) -> Path:
    """The path of `parts` inside the installed package (it need not exist), symbolic links
    resolved: in a checkout, the top-level folder itself.

    Callers hand these paths to code that wants real files (lark, peft, safetensors), so the
    package must be installed as files, which is what pip does with a wheel.
    """
    root = files(__package__ or "tracegrammar")
    if not isinstance(root, Path):
        raise RuntimeError(f"tracegrammar is not installed as files ({root!r}): reinstall with pip")
    return root.joinpath(*parts).resolve()


def shipped_adapter(name: str = "default") -> Path:
    """A LoRA adapter shipped with the package: `default` (what `generate` uses) or `tabular`."""
    return package_data("adapters", name)
