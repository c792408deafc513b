"""`python -m tracegrammar.cli ...`: the same as the `tracegrammar` command."""

from . import main

raise SystemExit(main())
