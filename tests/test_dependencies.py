"""The libraries the decoder drives through their APIs are bounded above (a future release cannot
silently break generation), and the installed versions are inside the bounds."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
COUPLED = ("torch", "transformers", "peft", "outlines", "llguidance")


def _requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


@pytest.mark.parametrize("name", COUPLED)
def test_bounded_above_and_installed_within(name):
    req = _requirements()[name]
    assert any(s.operator in ("<", "<=", "==") for s in req.specifier), f"{req}: no upper bound"
    assert req.specifier.contains(version(name).split("+")[0], prereleases=True), (
        req,
        version(name),
    )


EXTRAS = {"ray": ("ray",), "send": ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-grpc")}


@pytest.mark.parametrize(("extra", "name"), [(e, n) for e, ns in EXTRAS.items() for n in ns])
def test_extras_are_bounded_and_dev_takes_them(extra, name):
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = {r.name: r for r in map(Requirement, project["optional-dependencies"][extra])}
    assert any(s.operator in ("<", "<=") for s in reqs[name].specifier), reqs[name]
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    assert any(r.name == "tracegrammar" and extra in r.extras for r in dev)
    try:
        installed = version(name)
    except Exception:  # not installed here: the bound is all there is to check
        return
    assert reqs[name].specifier.contains(installed, prereleases=True), (reqs[name], installed)
