"""`tracegrammar train`: the argparse side of LoRA fine-tuning.

`register_train(parser)` fills the sub-command's parser; `main(argv)` runs it standalone
(`python -m tracegrammar.training ...`), with the same one-line errors and exit code 2 as the main
CLI. Flags override the `--config` YAML, which overrides `TrainConfig`'s
defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..training.datasets import SAMPLE_FORMATS

if TYPE_CHECKING:  # torch-free either way, but keep `--help` from importing the trainer
    from ..training.config import TrainConfig


def register_train(p: argparse.ArgumentParser) -> None:
    p.description = (
        "LoRA fine-tune a base model on call-graph samples (resumes automatically). Flags not "
        "given take their value from --config, else from the built-in recipe."
    )
    p.add_argument("--data", nargs="+", metavar="PATH", help="trace files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="adapter and checkpoint folder")
    p.add_argument("--config", metavar="YAML", help="recipe, e.g. training/default.yaml")
    p.add_argument("--base", metavar="MODEL_DIR", help="local HF model (default: embedded SmolLM2)")
    p.add_argument(
        "--sample-format",
        dest="sample_format",
        choices=SAMPLE_FORMATS,
        help="sample format (mix: layer + layer_instruct)",
    )
    # the earlier name, kept working but hidden: `--format` is the export format elsewhere
    p.add_argument("--format", dest="sample_format", choices=SAMPLE_FORMATS, help=argparse.SUPPRESS)
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (overrides epochs)")
    p.add_argument(
        "--epochs",
        type=float,
        metavar="X",
        help="passes over the training samples (a fraction is allowed)",
    )
    p.add_argument("--batch-size", type=int, metavar="N", help="samples per optimizer step")
    p.add_argument("--micro-batch-size", type=int, metavar="N", help="samples per forward pass")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument(
        "--max-length",
        type=int,
        metavar="TOKENS",
        help="longest sample in tokens (see --skip-long)",
    )
    p.add_argument(
        "--skip-long", action="store_true", default=None, help="skip, not fail on, long samples"
    )
    p.add_argument(
        "--eval-every", type=int, metavar="N", help="validation loss every N steps (0: never)"
    )
    p.add_argument("--save-every", type=int, metavar="N", help="checkpoint interval (steps)")
    p.add_argument("--seed", type=int, help="random seed (sample order, LoRA init)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop this session after N steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The YAML (or the defaults) with every given flag on top."""
    from ..errors import TrainError
    from ..training.config import TrainConfig

    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    data = tuple(str(Path(d).resolve()) for d in args.data) if args.data else None
    base = str(Path(args.base).resolve()) if args.base else None
    values = dict(
        data=data,
        base=base,
        format=args.sample_format,
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        lr=args.lr,
        max_length=args.max_length,
        skip_long=args.skip_long,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        device=args.device,
        progress=False if args.no_progress else None,
    )
    try:
        return cfg.override(**values)
    except TrainError as exc:  # a bad flag value: name the flag, not the config key
        problem = str(exc).removeprefix("config: ")
        field = problem.split(" ", 1)[0]
        if values.get(field) is None:
            raise
        flag = "--sample-format" if field == "format" else "--" + field.replace("_", "-")
        raise TrainError(f"{flag}: {problem}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..training.loop import train
    from .common import check_dir

    if args.base is not None:  # before torch is imported
        check_dir("--base", args.base, "config.json", "a Hugging Face model directory")
    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError(f"--stop-after must be >= 1, got {args.stop_after}")
    result = train(config_from_args(args), args.out, stop_after=args.stop_after)
    state = "finished" if result.finished else "stopped (resume with the same command)"
    print(f"{result.out}: {state} at step {result.steps} of {result.total_steps}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .common import Parser

    parser = Parser(prog="tracegrammar train")
    register_train(parser)
    args = parser.parse_args(argv)
    from . import run_command

    return run_command(args.func, args, "interrupted (resume with the same command)")


if __name__ == "__main__":
    sys.exit(main())
