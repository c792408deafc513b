"""What a user may ask for: `Constraints(service, num_edges=None, depth=None, latency=None)`,
plus the requested attributes `high_latency`, `include_calls` and `uncommon_call`.

Validation happens here, before any model is touched, and names the field and the value.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import ConstraintError
from .rules import shape_problem
from .types import CALL_TYPES, USER

SERVICE_RE = re.compile(r"S_(0|[1-9][0-9]*)")
#: A microservice name: Alibaba v2022 `MS_<n>` (at most five digits) or a v2021 64-hex hash.
#: The same pattern as the grammar's MS terminal (grammars/common.lark; a test keeps them equal).
MS_RE = re.compile(r"MS_(0|[1-9][0-9]{0,4})|[0-9a-f]{64}")
_S_PADDED = re.compile(r"^S_0+(?=[0-9])")
_MS_PADDED = re.compile(r"^MS_0+(?=[0-9])")


def normalise_service(value: str) -> str:
    """`S_036816397` (as the TraceLLM data writes ids) -> `S_36816397`: the one canonical form,
    used by the trace loader and by `Constraints`, so the same service is one id everywhere."""
    return _S_PADDED.sub("S_", value.strip())


def normalise_name(value: str) -> str:
    """`MS_007` -> `MS_7` (the loader's reading of zero-padded microservice names)."""
    return _MS_PADDED.sub("MS_", value)


@dataclass(frozen=True, slots=True)
class Constraints:
    """Attributes a generated call graph must have. Unset fields are left to the model/prior.

    `latency` is an upper bound on the root call's finish time (ms); `num_edges` and `depth` are
    exact. Requested attributes (`tracegrammar.attributes` plans them against the reference):
    `high_latency`, the root call finishes at or above the service's 90th percentile;
    `include_calls`, these (source, destination, type) calls appear; `uncommon_call`, at least
    one call that is in under 10% of the service's real graphs appears.
    """

    service: str
    num_edges: int | None = None
    depth: int | None = None
    latency: int | None = None
    high_latency: bool = False
    include_calls: tuple[tuple[str, str, str], ...] = ()
    uncommon_call: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.service, str):  # accept ids as the data writes them, keep one form
            object.__setattr__(self, "service", normalise_service(self.service))
        object.__setattr__(self, "include_calls", _normalise_calls(self.include_calls))
        validate(self)

    @property
    def has_attributes(self) -> bool:
        """Whether any requested attribute (beyond service and shape) is set."""
        return bool(self.high_latency or self.include_calls or self.uncommon_call)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Constraints:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConstraintError(
                f"unknown constraint field {unknown[0]!r} (known: {', '.join(sorted(known))})",
                unknown[0],
            )
        if "service" not in data:
            raise ConstraintError("constraint field 'service' is required", "service")
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set (defaults omitted); calls as lists, for JSON and YAML."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        for name in ("high_latency", "uncommon_call"):
            if out.get(name) is False:
                del out[name]
        calls = out.pop("include_calls", ())
        if calls:
            out["include_calls"] = [list(call) for call in calls]
        return out


def parse_call(value: object, field: str = "include_calls") -> tuple[str, str, str]:
    """`"SRC,DST,TYPE"` or a 3-item list -> a normalised (source, destination, type) call;
    ConstraintError naming `field` and the value otherwise."""
    parts: object = value
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    if not isinstance(parts, list | tuple) or len(parts) != 3:
        raise ConstraintError(
            f"{field} entries are SOURCE,DESTINATION,TYPE calls, got {value!r}", field
        )
    if not all(isinstance(p, str) for p in parts):
        raise ConstraintError(f"{field} entries are three strings, got {value!r}", field)
    src, dst, kind = (str(p).strip() for p in parts)
    return (src if src == USER else normalise_name(src), normalise_name(dst), kind)


def _normalise_calls(value: object) -> object:
    """include_calls as a tuple of normalised calls (left as is when not a sequence, for
    `validate` to refuse)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return value
    return tuple(parse_call(v) for v in value)


def validate(c: Constraints) -> None:
    """Raise ConstraintError (a ValueError) naming the first field whose value no valid call
    graph can have (`.field` holds its name)."""
    if not isinstance(c.service, str) or not SERVICE_RE.fullmatch(c.service):
        raise ConstraintError(f"service must look like S_<digits>, got {c.service!r}", "service")
    for name in ("num_edges", "depth", "latency"):
        value = getattr(c, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConstraintError(f"{name} must be an integer, got {value!r}", name)
    for name in ("high_latency", "uncommon_call"):
        if not isinstance(getattr(c, name), bool):
            raise ConstraintError(f"{name} must be true or false, got {getattr(c, name)!r}", name)
    _validate_calls(c.include_calls)
    if c.num_edges is not None and c.num_edges < 1:
        raise ConstraintError(f"num_edges must be >= 1, got {c.num_edges}", "num_edges")
    if c.depth is not None and c.depth < 1:
        raise ConstraintError(f"depth must be >= 1, got {c.depth}", "depth")
    if c.latency is not None and c.latency < 0:
        raise ConstraintError(f"latency must be >= 0 ms, got {c.latency}", "latency")
    if c.num_edges is not None and c.depth is not None:
        problem = shape_problem(c.num_edges, c.depth)
        if problem is not None:
            raise ConstraintError(problem, "depth")


def _validate_calls(calls: object) -> None:
    field = "include_calls"
    if not isinstance(calls, tuple):
        raise ConstraintError(f"{field} must be a list of calls, got {calls!r}", field)
    seen: set[tuple[str, str, str]] = set()
    for call in calls:
        src, dst, kind = call
        if src != USER and not MS_RE.fullmatch(src):
            raise ConstraintError(
                f"{field}: source must be USER or a microservice name (MS_<n>), got {src!r}", field
            )
        if not MS_RE.fullmatch(dst):
            raise ConstraintError(
                f"{field}: destination must be a microservice name (MS_<n>), got {dst!r}", field
            )
        if kind not in CALL_TYPES:
            raise ConstraintError(
                f"{field}: call type must be one of {', '.join(CALL_TYPES)}, got {kind!r}", field
            )
        if call in seen:
            raise ConstraintError(f"{field}: call {','.join(call)} is listed twice", field)
        seen.add(call)


#: Limits that protect the machine. The papers' grid stops at 30 calls and real graphs of the
#: samples at ~100; one request of 10^11 graphs would exhaust memory before the first was written.
MAX_NUM_EDGES = 200
MAX_GRAPHS_PER_RUN = 100_000


def check_request_size(c: Constraints, n: int) -> None:
    """Refuse a generation request beyond the documented limits (ConstraintError naming the
    field and the value); `Constraints` alone has no upper bounds, as real graphs can be big."""
    if c.num_edges is not None and c.num_edges > MAX_NUM_EDGES:
        raise ConstraintError(
            f"num_edges must be at most {MAX_NUM_EDGES} per generated graph, got {c.num_edges}",
            "num_edges",
        )
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_GRAPHS_PER_RUN:
        raise ConstraintError(
            f"n must be an integer from 1 to {MAX_GRAPHS_PER_RUN}, got {n!r}", "n"
        )
