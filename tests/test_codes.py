"""One catalogue of error codes (`tracegrammar.codes`): every `"E_..."` string in the package is
one of its codes, whichever module reports it (the oracle, the shared numeric rules, the
decoder). That every code is documented and tested: tests/test_oracle_codes.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tracegrammar import oracle
from tracegrammar.codes import CODES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tracegrammar"
CODE_RE = re.compile(r"E_[A-Z][A-Z_]*")


def _code_literals() -> dict[str, list[str]]:
    """code -> the files (relative to the package) whose string constants spell it."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and CODE_RE.fullmatch(node.value):
                found.setdefault(node.value, []).append(str(path.relative_to(PACKAGE)))
    return found


def test_every_code_literal_is_in_the_catalogue():
    literals = _code_literals()
    unknown = {code: files for code, files in literals.items() if code not in CODES}
    assert unknown == {}
    # the rules and the oracle both report codes (the scan sees them)
    assert any("rules.py" in files for files in literals.values())
    assert any("oracle.py" in files for files in literals.values())


def test_every_catalogue_code_is_spelled_somewhere_and_described():
    literals = _code_literals()
    assert all(CODE_RE.fullmatch(code) and text.strip() for code, text in CODES.items())
    # a code no module can report is dead weight in the catalogue ("codes.py" spells them all)
    assert {code for code, files in literals.items() if set(files) - {"codes.py"}} == set(CODES)


def test_the_oracle_reads_the_catalogue():
    assert oracle.CODES is CODES
