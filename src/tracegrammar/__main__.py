"""`python -m tracegrammar ...`: the same as the `tracegrammar` command."""

from .cli import main

raise SystemExit(main())
