"""The exception hierarchy (`tracegrammar.errors`) and how the CLI maps it: input errors are one
line with exit 2, an OSError on a named path too, anything else keeps its traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tracegrammar import errors
from tracegrammar.cli import CliError, main, run_command
from tracegrammar.constraints import Constraints

INPUT_ERRORS = [
    errors.ConstraintError,
    errors.TraceFormatError,
    errors.OutputPathError,
    errors.UsageError,
    errors.ModelError,
    errors.TrainError,
]


@pytest.mark.parametrize("cls", INPUT_ERRORS)
def test_input_errors_are_value_errors_under_the_root(cls):
    assert issubclass(cls, errors.InputError)
    assert issubclass(cls, ValueError) and issubclass(cls, errors.TracegrammarError)


def test_engine_error_is_not_an_input_error():
    assert issubclass(errors.EngineError, errors.TracegrammarError)
    assert issubclass(errors.EngineError, RuntimeError)
    assert not issubclass(errors.EngineError, errors.InputError)


def test_old_import_places_name_the_same_classes():
    from tracegrammar import TraceFormatError
    from tracegrammar.decoding.engine import EngineError
    from tracegrammar.decoding.models import ModelError
    from tracegrammar.training.lora import TrainError

    assert TraceFormatError is errors.TraceFormatError and EngineError is errors.EngineError
    assert ModelError is errors.ModelError and TrainError is errors.TrainError
    assert CliError is errors.UsageError


@pytest.mark.parametrize(
    "kwargs",
    [{"service": "X_1"}, {"service": "S_1", "num_edges": 0}, {"service": "S_1", "depth": "3"}],
)
def test_bad_constraints_raise_constraint_error(kwargs):
    with pytest.raises(errors.ConstraintError):
        Constraints(**kwargs)


def _raises(exc: BaseException):
    def func(_: argparse.Namespace) -> int:
        raise exc

    return func


def test_input_error_is_one_line_exit_2(capsys):
    code = run_command(
        _raises(errors.UsageError("--top-k: must be\n>= 0, got -1")), argparse.Namespace()
    )
    err = capsys.readouterr().err
    assert code == 2 and err == "tracegrammar: error: --top-k: must be >= 0, got -1\n"


def test_os_error_on_a_path_names_the_path(capsys):
    exc = PermissionError(13, "Permission denied", "/somewhere/out.jsonl")
    assert run_command(_raises(exc), argparse.Namespace()) == 2
    assert (
        capsys.readouterr().err == "tracegrammar: error: /somewhere/out.jsonl: permission denied\n"
    )


@pytest.mark.parametrize(
    "bug", [KeyError("x"), RuntimeError("boom"), ValueError("plain"), OSError("no path")]
)
def test_bugs_keep_their_traceback(bug):
    with pytest.raises(type(bug)):
        run_command(_raises(bug), argparse.Namespace())


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("tracegrammar ")


def test_trace_format_error_from_the_command_line(tmp_path):
    bad = tmp_path / "g.jsonl"
    bad.write_text('{"service": "S_1", "edges": [{"rpc_id": "0"}]}\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracegrammar.cli",
            "export",
            str(bad),
            "--format",
            "jsonl",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and f"{bad}:1:" in proc.stderr


@pytest.mark.parametrize("temperature", [float("inf"), float("nan"), -0.5])
def test_library_generate_refuses_bad_temperature_before_the_model(temperature):
    from tracegrammar.decoding.driver import generate

    with pytest.raises(errors.InputError, match="temperature must be a finite number"):
        generate(Constraints("S_1"), temperature=temperature, model=object())  # type: ignore[arg-type]
