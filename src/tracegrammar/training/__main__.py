"""`python -m tracegrammar.training --data ... --out ...`: the `train` command on its own."""

import sys

from ..cli.train import main

sys.exit(main())
