"""The embedded base model for a lent accelerator machine, which has no network and takes at most
64 MiB of files per call: too little for the base's GGUF (98 MB; 90 MB compressed).

- `pack` (here): compress the GGUF (xz) and cut it into `--parts` parts, `DIR/gguf-<k>/`, each
  with its checksum, and write `DIR/base/weights.json`: the GGUF's name and sha256 and the digest
  of the parameters this machine's conversion gives (`models.parameters_digest`).
- `status` (there, standard library only): which parts have arrived intact, so a call that only
  carries a part can say so in a second.
- `unpack` (there): check and join the parts, check the GGUF's sha256, convert it into the cache
  where `default_model_dir` finds it (`models.install_default_base`, with the tokenizer carried
  in `DIR/base`, not the GGUF's), then load it and compare its parameters' digest with this
  machine's: the model there is the very model here, or the command fails.

Files in DIR stay between calls while the machine is held, so the parts travel in consecutive
calls: see bench/device/README.md.

    .venv/bin/python bench/device/base.py pack --out .device --parts 2
    python3 bench/device/base.py status --device-dir .device
    python3 bench/device/base.py unpack --device-dir .device
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WEIGHTS = "weights.json"
PART = "part.xz"
PART_META = "part.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(out: Path, parts: int, balance: int = 0) -> dict[str, Any]:
    """Write the parts and `base/weights.json` under `out`; returns the manifest. `balance`:
    how many more bytes travel beside the first part than beside the last (the first part is
    made that much smaller than the last, so the calls carry about the same)."""
    from tracegrammar.decoding.models import (
        DEFAULT_GGUF_SHA256,
        default_gguf_path,
        default_model_dir,
        parameters_digest,
    )

    if parts < 1:
        raise SystemExit(f"--parts must be at least 1, got {parts}")
    gguf = default_gguf_path()
    raw = gguf.read_bytes()
    if _sha256(raw) != DEFAULT_GGUF_SHA256:
        raise SystemExit(f"{gguf}: not the default base's GGUF (sha256 differs)")
    t0 = time.perf_counter()
    packed = lzma.compress(raw, preset=6)
    print(f"compressed {len(raw) / 1e6:.1f} MB -> {len(packed) / 1e6:.1f} MB "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    write_parts(packed, out, parts, balance)
    manifest = {
        "gguf": gguf.name,
        "gguf_sha256": DEFAULT_GGUF_SHA256,
        "parts": parts,
        "packed_sha256": _sha256(packed),
        "parameters_sha256": _digest_of(default_model_dir(progress=True), parameters_digest),
    }
    (out / "base").mkdir(parents=True, exist_ok=True)
    (out / "base" / WEIGHTS).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def write_parts(packed: bytes, out: Path, parts: int, balance: int = 0) -> None:
    """`packed` cut by `part_bounds` into `out/gguf-<k>/`, each part with its checksum."""
    cuts = part_bounds(len(packed), parts, balance)
    for k in range(parts):
        chunk = packed[cuts[k] : cuts[k + 1]]
        folder = out / f"gguf-{k + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PART).write_bytes(chunk)
        meta = {"index": k + 1, "count": parts, "bytes": len(chunk), "sha256": _sha256(chunk)}
        (folder / PART_META).write_text(json.dumps(meta) + "\n")


def part_bounds(total: int, parts: int, balance: int = 0) -> list[int]:
    """Where `total` bytes are cut into `parts` parts of equal size, except that the first is
    smaller than the last by `balance` (within what the sizes allow)."""
    if parts == 1:
        return [0, total]
    size = total / parts
    shift = max(-size / 2, min(size / 2, balance / 2))
    sizes = [size] * parts
    sizes[0] -= shift
    sizes[-1] += shift
    bounds = [0]
    for s in sizes:
        bounds.append(min(total, round(bounds[-1] + s)))
    bounds[-1] = total
    return bounds


def _digest_of(folder: Path, digest: Any) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return str(digest(model))


def status(device_dir: Path) -> tuple[dict[str, Any], list[int], list[int]]:
    """(the manifest, the parts present and intact, the parts missing or damaged)."""
    manifest_path = device_dir / "base" / WEIGHTS
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        count = int(manifest["parts"])
    else:  # the manifest travels with the last call; a part knows the count too
        metas = sorted(device_dir.glob(f"gguf-*/{PART_META}"))
        manifest = {}
        count = json.loads(metas[0].read_text())["count"] if metas else 0
    good, bad = [], []
    for k in range(1, count + 1):
        folder = device_dir / f"gguf-{k}"
        try:
            meta = json.loads((folder / PART_META).read_text())
            ok = _sha256((folder / PART).read_bytes()) == meta["sha256"]
        except (OSError, ValueError, KeyError):
            ok = False
        (good if ok else bad).append(k)
    return manifest, good, bad


def unpack(device_dir: Path) -> Path:
    """Join, check and convert the parts; returns the converted base's folder."""
    from tracegrammar.decoding.models import (
        DEFAULT_NAME,
        cache_dir,
        install_default_base,
        parameters_digest,
    )

    t0 = time.perf_counter()
    manifest, good, bad = status(device_dir)
    if not manifest:
        raise SystemExit(f"{device_dir / 'base' / WEIGHTS}: missing (carry {device_dir}/base)")
    if bad:
        names = ", ".join(f"{device_dir}/gguf-{k}" for k in bad)
        raise SystemExit(f"base: parts missing or damaged: {names} (carry them, the machine "
                         "must stay held between the calls)")  # fmt: skip
    target = cache_dir() / DEFAULT_NAME
    if not (target / "config.json").is_file():
        packed = b"".join((device_dir / f"gguf-{k}" / PART).read_bytes() for k in good)
        if _sha256(packed) != manifest["packed_sha256"]:
            raise SystemExit("base: the joined parts are not what was packed")
        with tempfile.TemporaryDirectory(prefix="tracegrammar-gguf.") as tmp:
            gguf = Path(tmp) / manifest["gguf"]
            gguf.write_bytes(lzma.decompress(packed))
            install_default_base(gguf, tokenizer=device_dir / "base", progress=True)
    digest = _digest_of(target, parameters_digest)
    if digest != manifest["parameters_sha256"]:
        raise SystemExit(
            f"base: {target} holds other weights than the packing machine's conversion "
            f"(parameters sha256 {digest[:16]}..., expected {manifest['parameters_sha256'][:16]}...)"
        )
    print(f"base: {target} ready, parameters as packed ({time.perf_counter() - t0:.0f} s)",
          flush=True)  # fmt: skip
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: compress and cut the GGUF, write the manifest")
    p.add_argument("--out", type=Path, default=Path(".device"))
    p.add_argument("--parts", type=int, default=2)
    p.add_argument("--balance", type=int, default=0, help="bytes more beside the first part")
    for name, text in (("status", "which parts have arrived"), ("unpack", "join and convert")):
        q = sub.add_parser(name, help=f"there: {text}")
        q.add_argument("--device-dir", type=Path, default=Path(".device"))
    args = ap.parse_args(argv)
    if args.command == "pack":
        manifest = pack(args.out, args.parts, args.balance)
        print(f"packed {manifest['gguf']} into {manifest['parts']} part(s) under {args.out}")
    elif args.command == "status":
        manifest, good, bad = status(args.device_dir)
        count = len(good) + len(bad)
        print(f"base parts: {len(good)} of {count} here and intact "
              f"(missing or damaged: {bad or 'none'}); manifest "
              f"{'here' if manifest else 'not here yet'}")  # fmt: skip
    else:
        unpack(args.device_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
