"""Every exception tracegrammar raises on purpose, in one small hierarchy.

```
TracegrammarError                  the root: `except TracegrammarError` catches everything deliberate
├── InputError (also ValueError)   the caller's input is at fault; one line naming the file, field
│   │                              or flag and the value (the CLI prints it and exits 2)
│   ├── ConstraintError            a `Constraints` field no valid call graph can have
│   ├── TraceFormatError           a path that cannot be read as traces or graphs
│   ├── OutputPathError            an output path that cannot, or must not, be written
│   ├── UsageError                 a command-line flag with a value no run can use
│   ├── ModelError                 a base model or adapter that cannot be used
│   ├── TrainError                 bad training input or an unusable training folder
│   ├── MissingExtraError          an optional extra (`tracegrammar[ray]`, `[send]`) not installed
│   └── SendError                  a trace endpoint that cannot be reached or refuses the spans
├── ShardsUnfinishedError          a distributed job ended with shards a worker failed on past
│   (also RuntimeError)            its retries; the manifest names them, a rerun finishes them
└── EngineError (also RuntimeError) the decoder broke a promise: a bug, never the caller's fault
```

`InputError` keeps `ValueError` as a base so that code written against the earlier plain
`ValueError`s keeps working. Anything else that escapes (a `KeyError`, a `RecursionError` ...) is a
bug and is meant to show as a traceback. This module imports nothing, so every layer may use it.
"""

from __future__ import annotations

from pathlib import Path


class TracegrammarError(Exception):
    """Root of every exception tracegrammar raises on purpose."""


class InputError(TracegrammarError, ValueError):
    """Bad input from the caller; `str()` is one line naming what is wrong and the value."""


class ConstraintError(InputError):
    """A constraint field whose value no valid call graph can have; `field` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TraceFormatError(InputError):
    """A path that cannot be read as traces. `str()` is one line naming the file and problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class OutputPathError(InputError):
    """An output path that cannot be written (a read-only folder, a parent that is a file, a full
    disk) or must not be (a symlink, a device, a folder where a file is to go)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class UsageError(InputError):
    """A command-line flag or argument with a value no run can use."""


class ModelError(InputError):
    """A model or adapter that cannot be used; the message names the path and the problem."""


class TrainError(InputError):
    """Bad training input or an unusable output directory; one line naming what and where."""


class MissingExtraError(InputError):
    """An optional feature whose packages are not installed; the message says what to install."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the `{extra}` extra: pip install 'tracegrammar[{extra}]'"
        )
        self.extra = extra


class SendError(InputError):
    """A trace endpoint that cannot be reached or refuses every span; names the endpoint."""


class ShardsUnfinishedError(TracegrammarError, RuntimeError):
    """A distributed job ended with shards unfinished (a worker failed past its retries).

    What finished is kept; the manifest names the rest, and the same call again finishes them."""


class EngineError(TracegrammarError, RuntimeError):
    """The engine reached a state it promises never to reach (a dead end, a rejected token)."""


def os_error_message(exc: OSError) -> str:
    """`[Errno 13] Permission denied: 'x'` -> `permission denied` (the caller names the path)."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


__all__ = [
    "ConstraintError",
    "EngineError",
    "InputError",
    "ModelError",
    "OutputPathError",
    "TraceFormatError",
    "TracegrammarError",
    "TrainError",
    "UsageError",
    "os_error_message",
]
