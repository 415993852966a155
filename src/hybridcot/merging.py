"""`hybridcot merge`: AdaR1 stage I, θ_H = α·θ_L + (1 − α)·θ_S over two checkpoint folders.

    hybridcot merge long=runs/demo/world/long short=runs/demo/world/short output=runs/demo/adar1/merge
    hybridcot merge -c recipes/tiny/merge.yaml alpha_sweep=0.5,0.6,0.7,0.8,0.9 sweep_problems=world:val:100

Planning is separated from execution (as in mergekit): `check_compatible` reads only safetensors
headers, configs and tokenizer files, and refuses with one line the first difference (tensor
names, shapes, dtypes, vocab size, tokenizer, chat template). `write_merge` then streams the tensors
in 1 MiB pieces (pread, no mmap), computes in float32 (float64 stays float64), casts back to the
source dtype and writes each piece straight into its output shard, mirroring the long model's
sharding, so memory stays a few MiB whatever the shard or model size. The arithmetic is numpy's,
bit for bit what `interpolate` (torch) gives, so the on-disk merge never imports torch (its start-up
alone took longer than merging a 1.2 GB model); only float8 tensors and the α sweep use torch. Everything goes
into a temp folder beside `output`, renamed into place at the end. The folder also gets the long
model's config, generation config, tokenizer and chat template, `merge.json`, `config.yaml` and an
equivalent `mergekit.yaml` (`mergekit-yaml mergekit.yaml OUT` reproduces the tensors).

The α sweep loads both state dicts once, writes each α's weights in place into one model object and
evaluates it with the hf backend (no checkpoint per α): `sweep.json`, `sweep.png`,
`sweep_samples.jsonl` in `sweep_dir` (default: `output`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from hybridcot.config import field, save_config
from hybridcot.io import HybridcotError, atomic_write, read_json, swap_dir_into_place, write_json, write_jsonl
from hybridcot.ui import progress, progress_write

if TYPE_CHECKING:  # torch is imported where tensors are needed: the on-disk merge runs without it
    import torch

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model",
                   "chat_template.jinja", "chat_template.json")
COPY_FILES = ("config.json", "generation_config.json", *TOKENIZER_FILES)
DEFAULT_ALPHA = 0.8
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "BF16": "bfloat16", "F16": "float16"}


@dataclass
class MergeConfig:
    """Merge a Long and a Short checkpoint (AdaR1 stage I); optionally sweep α on validation problems."""

    long: str = field("", help="Long-CoT checkpoint folder (θ_L; safetensors, single file or sharded)")
    short: str = field("", help="Short-CoT checkpoint folder (θ_S): same tensors, shapes, dtypes and tokenizer")
    output: str = field("", help="folder for the merged checkpoint at `alpha` (optional when alpha_sweep is set)")
    alpha: float = field(DEFAULT_ALPHA, help="weight of the Long model: θ_H = α·θ_L + (1 − α)·θ_S (paper code: 0.8)")
    alpha_sweep: list[float] = field([], help="α values to evaluate on sweep_problems, each merged in memory "
                                              "(e.g. 0.5,0.6,0.7,0.8,0.9); no checkpoint is written per α")
    sweep_problems: str = field("", help="validation problem spec for the sweep (load_problems), "
                                         "e.g. world:val:100:seed=0")
    sweep_limit: int = field(100, help="evaluate the sweep on at most this many problems")
    sweep_dir: str = field("", help="folder for sweep.json, sweep.png, sweep_samples.jsonl (default: output)")
    max_tokens: int = field(1024, help="sweep: maximum generated tokens per response (greedy, one sample)")
    batch_size: int = field(64, help="sweep: problems per generate call")
    dtype: str = field("float32", help="sweep: dtype of the evaluated model (float32 | bfloat16 | float16 | auto)")
    backend: str = field("auto", help="sweep backend: auto | hf. The sweep merges in memory, so it runs on hf "
                                      "(vllm cannot take in-memory weights)")
    mergekit_yaml: str = field("", help="a mergekit `linear` YAML to take long, short and alpha from "
                                        "(first model = Long; weights normalized unless normalize: false)")
    seed: int = field(0, help="sampling seed (greedy decoding ignores it) and bootstrap seed")

    def __post_init__(self) -> None:
        if self.mergekit_yaml:
            long, short, alpha = read_mergekit_yaml(self.mergekit_yaml)
            for key, val in (("long", long), ("short", short)):
                mine = getattr(self, key)
                if mine and Path(mine).expanduser().resolve() != Path(val).expanduser().resolve():
                    raise ValueError(f"{key}={mine!r} disagrees with {self.mergekit_yaml} ({val!r})")
            if self.alpha != DEFAULT_ALPHA and abs(self.alpha - alpha) > 1e-9:
                raise ValueError(f"alpha={self.alpha} disagrees with {self.mergekit_yaml} (weights give {alpha:g})")
            self.long, self.short, self.alpha = long, short, alpha
        for key in ("long", "short"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is required (or give mergekit_yaml)")
        _check_alpha(self.alpha, "alpha")
        for i, a in enumerate(self.alpha_sweep):
            _check_alpha(a, f"alpha_sweep[{i}]")
        if len(set(self.alpha_sweep)) != len(self.alpha_sweep):
            raise ValueError(f"alpha_sweep has duplicate values: {self.alpha_sweep}")
        if not self.output and not self.alpha_sweep:
            raise ValueError("output is required (unless alpha_sweep is set)")
        if self.alpha_sweep:
            if not self.sweep_problems:
                raise ValueError("alpha_sweep needs sweep_problems (e.g. world:val:100:seed=0)")
            if not (self.sweep_dir or self.output):
                raise ValueError("alpha_sweep needs sweep_dir or output for sweep.json")
            if self.backend == "vllm":
                raise ValueError("the alpha sweep merges in memory and evaluates on the hf backend; "
                                 "backend 'vllm' is not supported here")
        if self.backend not in ("auto", "hf", "vllm"):
            raise ValueError(f"backend must be one of ['auto', 'hf', 'vllm'], got {self.backend!r}")
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ValueError(f"dtype must be float32 | bfloat16 | float16 | auto, got {self.dtype!r}")
        for key in ("sweep_limit", "max_tokens", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {alpha!r}")


# --------------------------------------------------------------------------- mergekit YAML

def read_mergekit_yaml(path: str | os.PathLike) -> tuple[str, str, float]:
    """(long, short, alpha) from a mergekit `linear` config with two models (the first is Long)."""
    path = Path(path)
    if not path.is_file():
        raise HybridcotError(f"{path}: mergekit YAML not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise HybridcotError(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML") from None
    if not isinstance(data, dict):
        raise HybridcotError(f"{path}: expected a mergekit config mapping at top level")
    if data.get("merge_method") != "linear":
        raise HybridcotError(f"{path}: merge_method: {data.get('merge_method')!r} is not supported (only 'linear')")
    for key in ("slices", "modules"):
        if data.get(key):
            raise HybridcotError(f"{path}: {key}: not supported; list the two models under 'models:'")
    models = data.get("models")
    if not isinstance(models, list) or len(models) != 2:
        raise HybridcotError(f"{path}: models: expected exactly 2 entries (Long first, then Short)")
    top = data.get("parameters") or {}
    if not isinstance(top, dict):
        raise HybridcotError(f"{path}: parameters: expected a mapping")
    normalize = top.get("normalize", True)
    if not isinstance(normalize, bool):
        raise HybridcotError(f"{path}: parameters.normalize: expected true/false, got {normalize!r}")
    names, weights = [], []
    for i, m in enumerate(models):
        if not isinstance(m, dict) or not isinstance(m.get("model"), str) or not m["model"]:
            raise HybridcotError(f"{path}: models[{i}].model: expected a checkpoint path")
        params = m.get("parameters") or {}
        w = params.get("weight", top.get("weight")) if isinstance(params, dict) else None
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise HybridcotError(f"{path}: models[{i}].parameters.weight: expected a number, got {w!r} "
                                 "(per-layer or filtered weights are not supported)")
        names.append(m["model"])
        weights.append(float(w))
    total = sum(weights)
    if normalize and total <= 0:
        raise HybridcotError(f"{path}: models: weights sum to {total:g}; they must sum to a positive number")
    if not normalize and abs(total - 1.0) > 1e-6:
        raise HybridcotError(f"{path}: models: weights sum to {total:g} with normalize: false; "
                             "α·θ_L + (1 − α)·θ_S needs them to sum to 1")
    alpha = weights[0] / total if normalize else weights[0]
    if not 0.0 <= alpha <= 1.0:
        raise HybridcotError(f"{path}: models: weights give α = {alpha:g}, outside [0, 1]")
    return names[0], names[1], alpha


def write_mergekit_yaml(path: str | os.PathLike, long: str | os.PathLike, short: str | os.PathLike,
                        alpha: float, out_dtype: str | None = None) -> Path:
    """Write the mergekit `linear` config that reproduces this merge (absolute model paths)."""
    doc: dict = {
        "merge_method": "linear",
        "models": [{"model": str(Path(long).resolve()), "parameters": {"weight": float(alpha)}},
                   {"model": str(Path(short).resolve()), "parameters": {"weight": round(1.0 - alpha, 12)}}],
        "parameters": {"normalize": True},
        "dtype": "float32",
    }
    if out_dtype:
        doc["out_dtype"] = out_dtype
    with atomic_write(path) as f:
        f.write("# θ_H = α·θ_L + (1 − α)·θ_S, written by `hybridcot merge`; reproduce with:\n"
                "#   mergekit-yaml mergekit.yaml OUT_DIR\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    return Path(path)


# --------------------------------------------------------------------------- planning

@dataclass
class Checkpoint:
    """A checkpoint folder's weights, from the safetensors headers only."""

    path: Path
    files: dict[str, str]  # tensor name -> shard file, in the checkpoint's order
    meta: dict[str, tuple[str, tuple[int, ...]]]  # tensor name -> (safetensors dtype, shape)
    sharded: bool

    def shards(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, f in self.files.items():
            out.setdefault(f, []).append(name)
        return out


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read the tensor map and headers of a HF checkpoint folder (model.safetensors or sharded)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path).expanduser()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise HybridcotError(f"{path}: not a model checkpoint folder (no config.json)")
    if (path / INDEX).is_file():
        index = read_json(path / INDEX)
        wm = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wm, dict) or not wm:
            raise HybridcotError(f"{path / INDEX}: weight_map: expected a non-empty mapping")
        files, sharded = {str(k): str(v) for k, v in wm.items()}, True
    elif (path / WEIGHTS).is_file():
        files, sharded = {}, False
    else:
        raise HybridcotError(f"{path}: no {WEIGHTS} or {INDEX} (convert .bin checkpoints to safetensors first)")
    meta: dict[str, tuple[str, tuple[int, ...]]] = {}
    for shard in dict.fromkeys(files.values()) if sharded else [WEIGHTS]:
        if not (path / shard).is_file():
            raise HybridcotError(f"{path / INDEX}: shard {shard} is missing")
        try:
            with safe_open(path / shard, framework="numpy") as f:  # headers only; "pt" would import torch
                for name in f.keys():
                    if sharded and name not in files:  # not in the index: loaders ignore it, so do we
                        continue
                    sl = f.get_slice(name)
                    meta[name] = (sl.get_dtype(), tuple(sl.get_shape()))
                    if not sharded:
                        files[name] = shard
        except (OSError, SafetensorError) as e:
            raise HybridcotError(f"{path / shard}: unreadable safetensors file ({str(e).splitlines()[0]})") from None
    for name, shard in files.items():
        if name not in meta:
            raise HybridcotError(f"{path / INDEX}: tensor '{name}' is not in its shard {shard}")
    return Checkpoint(path, files, meta, sharded)


def check_compatible(long_dir: str | os.PathLike, short_dir: str | os.PathLike) -> tuple[Checkpoint, Checkpoint]:
    """Both checkpoints, or one HybridcotError line naming the models and their first difference."""
    L, S = open_checkpoint(long_dir), open_checkpoint(short_dir)
    pre = f"cannot merge {L.path} (long) and {S.path} (short)"
    only = sorted(set(L.meta) ^ set(S.meta))
    if only:
        side = "long" if only[0] in L.meta else "short"
        hint = " (tie_word_embeddings differs?)" if only[0] == "lm_head.weight" else ""
        raise HybridcotError(f"{pre}: tensor '{only[0]}' is only in the {side} model "
                             f"({len(only)} tensor names differ){hint}")
    for name, (dl, shl) in L.meta.items():
        ds, shs = S.meta[name]
        if shl != shs:
            raise HybridcotError(f"{pre}: tensor '{name}' has shape {list(shl)} in long and {list(shs)} in short")
        if dl != ds:
            raise HybridcotError(f"{pre}: tensor '{name}' has dtype {dl} in long and {ds} in short")
    cl, cs = read_json(L.path / "config.json"), read_json(S.path / "config.json")
    vl, vs = _vocab_size(cl), _vocab_size(cs)
    if vl != vs:
        raise HybridcotError(f"{pre}: config.json vocab_size is {vl} in long and {vs} in short")
    if cl.get("architectures") != cs.get("architectures"):
        raise HybridcotError(f"{pre}: config.json architectures are {cl.get('architectures')} in long and "
                             f"{cs.get('architectures')} in short")
    diff = _tokenizer_difference(L.path, S.path)
    if diff:
        raise HybridcotError(f"{pre}: {diff}")
    return L, S


def _vocab_size(cfg: dict):
    return cfg.get("vocab_size", (cfg.get("text_config") or {}).get("vocab_size"))


def _vocab_difference(va: dict, vb: dict, what: str) -> str | None:
    if len(va) != len(vb):
        return f"{what} sizes differ ({len(va)} in long, {len(vb)} in short)"
    for tok, i in sorted(va.items(), key=lambda kv: kv[1]):
        if vb.get(tok) != i:
            return f"{what} differ: token {tok!r} has id {i} in long and {vb.get(tok)} in short"
    return None


def _chat_template(path: Path) -> str | None:
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        if (path / name).is_file():
            t = read_json(path / name).get("chat_template")
            if t is not None:
                return t if isinstance(t, str) else json.dumps(t, sort_keys=True)
    return None


def _bpe_model_settings(model: dict) -> dict:
    """tokenizer.json's model section with an unset affix spelled one way: the `tokenizers` library
    writes continuing_subword_prefix / end_of_word_suffix as null or as "" depending on the path that
    saved it (measured: the world's Long has null, the same tokenizer saved by `hybridcot sft` has ""),
    and both mean no affix."""
    return {k: ("" if v is None and k in ("continuing_subword_prefix", "end_of_word_suffix") else v)
            for k, v in model.items()}


def _same_when_loaded(a: Path, b: Path) -> bool:
    """Whether transformers loads the two folders' tokenizers as the same pipeline. The files can
    differ where the tokenizers do not: transformers loads a byte-level BPE saved beside a qwen2 config
    as Qwen2Tokenizer, which adds an NFC normalizer, so the world's Long (saved from the bare tokenizer,
    normalizer null) and a model trained from it (saved from Qwen2Tokenizer, NFC) load identically."""
    from hybridcot.models import load_tokenizer

    try:
        ta, tb = load_tokenizer(a), load_tokenizer(b)
    except Exception:  # noqa: BLE001 - a tokenizer that does not load is compared by its files alone
        return False
    if not (hasattr(ta, "backend_tokenizer") and hasattr(tb, "backend_tokenizer")):
        return False
    return json.loads(ta.backend_tokenizer.to_str()) == json.loads(tb.backend_tokenizer.to_str())


def _tokenizer_difference(a: Path, b: Path) -> str | None:
    """The first way the two folders' tokenizers differ (vocab, merges, added tokens, chat template)."""
    has_a, has_b = (any((p / f).is_file() for f in TOKENIZER_FILES) for p in (a, b))
    if has_a != has_b:
        return f"only the {'long' if has_a else 'short'} model has tokenizer files"
    if (a / "tokenizer.json").is_file() and (b / "tokenizer.json").is_file():
        ja, jb = read_json(a / "tokenizer.json"), read_json(b / "tokenizer.json")
        ma, mb = ja.get("model") or {}, jb.get("model") or {}
        if isinstance(ma.get("vocab"), dict) and isinstance(mb.get("vocab"), dict):
            d = _vocab_difference(ma["vocab"], mb["vocab"], "tokenizer vocabularies")
            if d:
                return d
        if ma.get("merges") != mb.get("merges"):
            return "tokenizer merges differ"
        if _bpe_model_settings(ma) != _bpe_model_settings(mb):
            return "tokenizer.json models differ"
        ta, tb = ja.get("added_tokens") or [], jb.get("added_tokens") or []
        for x, y in zip(ta, tb):
            if x != y:
                return f"added token {x.get('content')!r} (id {x.get('id')}) differs from {y.get('content')!r}"
        if len(ta) != len(tb):
            return f"added tokens differ ({len(ta)} in long, {len(tb)} in short)"
        key = next((k for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder") if ja.get(k) != jb.get(k)),
                   None)
        if key is not None and not _same_when_loaded(a, b):  # loaded once, only where the files differ
            return f"tokenizer.json '{key}' differs"
    elif has_a:
        from hybridcot.models import load_tokenizer

        d = _vocab_difference(load_tokenizer(a).get_vocab(), load_tokenizer(b).get_vocab(), "tokenizer vocabularies")
        if d:
            return d
    if _chat_template(a) != _chat_template(b):
        return "chat templates differ"
    return None


# --------------------------------------------------------------------------- execution

def interpolate(a: torch.Tensor, b: torch.Tensor, alpha: float, name: str = "") -> torch.Tensor:
    """α·a + (1 − α)·b computed in float32 (float64 kept) and cast back to a's dtype."""
    import torch

    if a.is_floating_point():
        ct = torch.float64 if a.dtype == torch.float64 else torch.float32
        return (alpha * a.to(ct) + (1.0 - alpha) * b.to(ct)).to(a.dtype)
    if torch.equal(a, b):  # integer buffers: nothing to interpolate when they agree
        return a.clone()
    raise HybridcotError(f"tensor '{name}' is {a.dtype} (not floating point) and differs between the models")


def merge_state_dicts(sd_long: dict[str, torch.Tensor], sd_short: dict[str, torch.Tensor],
                      alpha: float) -> dict[str, torch.Tensor]:
    """θ_H = α·θ_L + (1 − α)·θ_S for every tensor of two in-memory state dicts (same names, shapes, dtypes)."""
    try:
        _check_alpha(alpha)
    except ValueError as e:
        raise HybridcotError(str(e)) from None
    only = sorted(set(sd_long) ^ set(sd_short))
    if only:
        side = "long" if only[0] in sd_long else "short"
        raise HybridcotError(f"cannot merge state dicts: tensor '{only[0]}' is only in the {side} one")
    out = {}
    for name, a in sd_long.items():
        b = sd_short[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise HybridcotError(f"cannot merge state dicts: tensor '{name}' is {a.dtype} {list(a.shape)} in long "
                                 f"and {b.dtype} {list(b.shape)} in short")
        out[name] = interpolate(a, b, alpha, name)
    return out


def load_weights(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint in memory (the sweep holds both models once)."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for shard, names in ckpt.shards().items():
        with safe_open(ckpt.path / shard, framework="pt") as f:
            out.update({n: f.get_tensor(n) for n in names})
    return out


# safetensors dtypes merged as floating point (computed in float32, float64 kept, cast back) -> bytes per
# element; every other dtype (integers, bool) is compared byte for byte and must agree between the models.
_FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
_TORCH_FLOAT8 = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}  # numpy has no float8: torch merges these
# What torch's float32 -> bfloat16 cast gives for every NaN (its AVX2 and AVX-512 kernels; its scalar code,
# in a build for a CPU without them, gives 0x7FC0): `_PieceMerger` writes the same.
_BF16_NAN = 0xFFFF


class _PieceMerger:
    """buf_a[:n] = α·a + (1 − α)·b on the raw bytes of one piece of a floating-point tensor, bit for bit what
    `interpolate` computes with torch, in numpy on work arrays reused from one piece to the next (no torch):

    * F32 / F64: in place, a *= α, b *= 1 − α, a = b + a, with α and 1 − α rounded to the dtype as torch
      rounds a Python scalar: the same IEEE operations, so every number is the same;
    * F16 / BF16: widened to float32 exactly, the same float32 operations, rounded back to nearest even.
      The conversions are integer operations on the bits (numpy has no bfloat16, and its float16 casts are
      scalar code, slower than these);
    * F8: torch (numpy has no float8), imported the first time such a piece comes.

    NaNs stay NaN. Their bits: BF16 `_BF16_NAN`, as torch; otherwise the NaN operand's payload, quieted, as
    the CPU propagates it (b's where both products are NaN, as torch's SIMD add; torch's own bits vary there
    between its SIMD code and its scalar code for tails of tensors, as they do for F16 NaNs).
    """

    def __init__(self) -> None:
        self._u: tuple = ()  # three uint32 work arrays (float32 views of the same memory) and a bool mask
        self._torch_work: dict = {}

    def _work(self, m: int) -> tuple:
        import numpy as np

        if not self._u or len(self._u[0]) < m:
            self._u = (np.empty(m, np.uint32), np.empty(m, np.uint32), np.empty(m, np.uint32), np.empty(m, np.bool_))
        return tuple(w[:m] for w in self._u)

    def __call__(self, dtype: str, buf_a: bytearray, buf_b: bytearray, n: int, alpha: float) -> None:
        import numpy as np

        with np.errstate(all="ignore"):  # inf - inf, overflow to inf: IEEE results, as torch, without warnings
            self._merge(dtype, buf_a, buf_b, n, alpha)

    def _merge(self, dtype: str, buf_a: bytearray, buf_b: bytearray, n: int, alpha: float) -> None:
        import numpy as np

        alpha = float(alpha)  # a Python float: numpy rounds it to float32 for float32 arrays, as torch does
        beta = 1.0 - alpha
        if dtype in ("F32", "F64"):  # in place in the read buffers
            t = np.dtype("<f4" if dtype == "F32" else "<f8")
            a, b = (np.frombuffer(buf, t, n // t.itemsize) for buf in (buf_a, buf_b))
            np.multiply(a, alpha, out=a)
            np.multiply(b, beta, out=b)
            np.add(b, a, out=a)  # b + a: equal to a + b (b's NaN payload where both are NaN, as torch's add)
            return
        if dtype in _TORCH_FLOAT8:
            self._torch(_TORCH_FLOAT8[dtype], buf_a, buf_b, n, alpha)
            return
        m = n // 2
        a, b = (np.frombuffer(buf, "<u2", m) for buf in (buf_a, buf_b))
        u1, u2, u3, mask = self._work(m)
        f1, f2 = u1.view(np.float32), u2.view(np.float32)
        if dtype == "BF16":
            for src, dst in ((a, u1), (b, u2)):  # bfloat16 is the top half of a float32: exact
                np.copyto(dst, src)
                np.left_shift(dst, 16, out=dst)
        else:
            _f16_to_f32(a, u1)
            _f16_to_f32(b, u2)
        np.multiply(f1, alpha, out=f1)
        np.multiply(f2, beta, out=f2)
        np.add(f2, f1, out=f1)  # b + a, as above
        nan = bool(np.isnan(f1.max()))  # max is NaN where any element is (a read, not a mask written)
        if nan:
            np.isnan(f1, out=mask)
        if dtype == "BF16":
            _f32_to_bf16(u1, a, u2)
            if nan:
                np.copyto(a, _BF16_NAN, where=mask)
            return
        _f32_to_f16(u1, a, u2, u3)
        if nan:  # F16C: sign, exponent all ones, the float32 NaN's top 10 payload bits (quiet bit included)
            w = u1[mask]
            a[mask] = ((w >> 16) & 0x8000) | 0x7C00 | ((w >> 13) & 0x3FF)

    def _torch(self, name: str, buf_a: bytearray, buf_b: bytearray, n: int, alpha: float) -> None:
        import torch

        st = getattr(torch, name)
        a = torch.frombuffer(buf_a, dtype=st, count=n // st.itemsize)
        b = torch.frombuffer(buf_b, dtype=st, count=n // st.itemsize)
        if st not in self._torch_work or self._torch_work[st][0].numel() < a.numel():
            self._torch_work[st] = (torch.empty(a.numel()), torch.empty(a.numel()))
        wa, wb = (w[: a.numel()] for w in self._torch_work[st])
        wa.copy_(a).mul_(alpha)
        wb.copy_(b).mul_(1.0 - alpha)
        a.copy_(wa.add_(wb))  # rounds back to the source dtype, as interpolate() does


def _f16_to_f32(h, u) -> None:
    """u (uint32) = the float32 bits of the float16 bits h, exactly (sign, subnormals, inf, NaN payload)."""
    import numpy as np

    np.copyto(u, h)
    np.left_shift(u, 16, out=u)  # the sign at bit 31, exponent and mantissa below it
    s = u.view(np.int32)
    np.right_shift(s, 3, out=s)  # exponent and mantissa to their float32 places (arithmetic shift: sign copies)...
    np.bitwise_and(u, 0x8FFFFFFF, out=u)  # ...cleared, the sign left alone: the value is now h·2^-112
    f = u.view(np.float32)
    np.multiply(f, 2.0 ** 112, out=f)  # exact (float16 subnormals become float32 normals)
    if f.max() >= 65536.0 or f.min() <= -65536.0:  # float16 inf / NaN (exponent all ones) are now ±2^16·(1 + m)
        np.bitwise_or(u, 0x7F800000, out=u, where=np.abs(f) >= 65536.0)


def _f32_to_bf16(u, out, t) -> None:
    """out (uint16) = the float32 bits u rounded to bfloat16, to nearest even: (u + 0x7FFF + ((u >> 16) & 1))
    >> 16, as torch (c10::BFloat16) rounds; NaNs are the caller's. u is overwritten; t is a uint32 work array."""
    import numpy as np

    np.right_shift(u, 16, out=t)
    np.bitwise_and(t, 1, out=t)
    np.add(t, 0x7FFF, out=t)
    np.add(u, t, out=u)
    np.right_shift(u, 16, out=u)
    np.copyto(out, u, casting="unsafe")


def _f32_to_f16(u, out, t1, t2) -> None:
    """out (uint16) = the float32 bits u rounded to float16, to nearest even (overflow to ±inf; NaNs are the
    caller's); t1, t2 are uint32 work arrays. Branch-free, as c10's fp16_ieee_from_fp32_value (FP16 library)."""
    import numpy as np

    f, base = u.view(np.float32), t1.view(np.float32)
    np.absolute(f, out=base)
    np.multiply(base, 2.0 ** 112, out=base)  # two steps: what overflows float16 becomes inf here
    np.multiply(base, 2.0 ** -110, out=base)
    np.bitwise_and(u, 0x7F800000, out=t2)  # bias = 2^(max(e, -14) + 15) for |x| = 2^e·1.m: base (4|x|) + bias
    np.maximum(t2, 0x38800000, out=t2)  # keeps base's bits to float16's precision, rounded to nearest even
    np.add(t2, 0x07800000, out=t2)  # by the float32 addition
    np.add(base, t2.view(np.float32), out=base)
    np.right_shift(t1, 13, out=t2)
    np.bitwise_and(t2, 0x7C00, out=t2)  # exponent
    np.bitwise_and(t1, 0xFFF, out=t1)  # mantissa (+ carry into the exponent)
    np.add(t1, t2, out=t1)
    np.right_shift(u, 16, out=t2)
    np.bitwise_and(t2, 0x8000, out=t2)  # sign
    np.bitwise_or(t1, t2, out=t1)
    np.copyto(out, t1, casting="unsafe")


_CHUNK = 1 << 20  # bytes of one input read: small enough that a piece's float32 work stays in the CPU caches


def _read_header(path: Path) -> tuple[int, dict, dict]:
    """(offset of the data section, {name: (begin, end)} within it, metadata) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None) or {}
        return 8 + n, {k: tuple(v["data_offsets"]) for k, v in header.items()}, meta
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise HybridcotError(f"{path}: unreadable safetensors header ({e})") from None


def _tensor_bytes(ck: Checkpoint) -> int:
    """The bytes of every tensor of a checkpoint, from its shards' headers."""
    total = 0
    for shard, names in ck.shards().items():
        _, offs, _ = _read_header(ck.path / shard)
        total += sum(offs[n][1] - offs[n][0] for n in names if n in offs)
    return total


def _pread(fd: int, view: memoryview, offset: int, path: Path) -> None:
    """Fill `view` from `fd` at `offset` (no mmap: the page cache is not charged to this process)."""
    done = 0
    while done < len(view):
        k = os.preadv(fd, [view[done:]], offset + done)
        if k <= 0:
            raise HybridcotError(f"{path}: file ends early (truncated shard?)")
        done += k


def _write_all(f, view: memoryview) -> None:
    """Write all of `view` to an unbuffered file (a raw write may write less than it was given)."""
    while view:
        view = view[f.write(view):]


def _stream(L: Checkpoint, S: Checkpoint, alpha: float, out_dir: Path) -> int:
    """Write the merged shards (the long model's sharding) into out_dir; returns the tensor bytes written.

    Each output shard is written as a safetensors file directly: its header first (names, shapes and
    dtypes are known from the inputs' headers), then every tensor in `_CHUNK`-byte pieces: read from
    both inputs with pread, interpolated in place in reused buffers, written. Memory stays a few MiB
    whatever the shard or tensor size; input files are read, not mapped, so their pages are never
    part of this process's RSS. The layout is save_file's (`_SAVE_ORDER`; the header padded to 8
    bytes), so every tensor is aligned and the file is byte for byte what save_file would write.
    """
    buf_a, buf_b = bytearray(_CHUNK), bytearray(_CHUNK)
    view_a, view_b = memoryview(buf_a), memoryview(buf_b)
    merge_floats = _PieceMerger()  # its work arrays are reused too
    headers: dict[Path, tuple[int, dict, dict]] = {}
    fds: dict[Path, int] = {}

    def source(ck: Checkpoint, name: str) -> tuple[int, int, int, Path]:
        """(fd, absolute offset, bytes, path) of a tensor in a checkpoint's shard."""
        path = ck.path / ck.files[name]
        if path not in headers:
            headers[path] = _read_header(path)
            fds[path] = os.open(path, os.O_RDONLY)
        start, offs, _ = headers[path]
        begin, end = offs[name]
        return fds[path], start + begin, end - begin, path

    def merge_piece(dtype: str, n: int, name: str) -> None:
        """buf_a[:n] = α·a + (1 − α)·b, for one piece of a tensor."""
        if dtype not in _FLOAT_DTYPES:
            if view_a[:n] != view_b[:n]:
                raise HybridcotError(f"tensor '{name}' is {_DTYPE_NAMES.get(dtype, dtype)} (not floating point) "
                                     "and differs between the models")
            return
        merge_floats(dtype, buf_a, buf_b, n, alpha)

    total, weight_map = 0, {}
    # Bytes merged (rate and time left for multi-GB models); off unless ui.progress_enabled().
    bar = progress(total=_tensor_bytes(L), desc="merge", unit="B", unit_scale=True,
                   unit_divisor=1024, mininterval=0.5)
    try:
        for shard, names in L.shards().items():
            _, _, meta = headers.get(L.path / shard) or _read_header(L.path / shard)
            order = sorted(names, key=lambda n: (_SAVE_ORDER.get(L.meta[n][0], len(_SAVE_ORDER)), n))
            entries, offset, tensors = {}, 0, []
            for name in order:
                dtype, shape = L.meta[name]
                fa, oa, nbytes, pa = source(L, name)
                fb, ob, nb, pb = source(S, name)
                if nb != nbytes:
                    raise HybridcotError(f"tensor '{name}' has {nbytes} bytes in {pa} and {nb} in {pb}")
                entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
                tensors.append((name, dtype, nbytes, (fa, oa, pa), (fb, ob, pb)))
                offset += nbytes
            head = json.dumps({"__metadata__": {**{str(k): str(v) for k, v in meta.items()}, "format": "pt"},
                               **entries}, separators=(",", ":")).encode()
            head += b" " * (-len(head) % 8)
            with open(out_dir / shard, "wb", buffering=0) as out:
                _write_all(out, memoryview(len(head).to_bytes(8, "little") + head))
                for name, dtype, nbytes, (fa, oa, pa), (fb, ob, pb) in tensors:
                    for k in range(0, nbytes, _CHUNK):
                        n = min(_CHUNK, nbytes - k)
                        _pread(fa, view_a[:n], oa + k, pa)
                        _pread(fb, view_b[:n], ob + k, pb)
                        merge_piece(dtype, n, name)
                        _write_all(out, view_a[:n])
                        bar.update(n)
            total += offset
            weight_map.update(dict.fromkeys(names, shard))
    finally:
        bar.close()
        for fd in fds.values():
            os.close(fd)
    if L.sharded:
        write_json(out_dir / INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
    return total


# save_file's order of tensors in a file: by dtype in this order (safetensors' Dtype enum, largest first,
# so every tensor is aligned), then by name.
_SAVE_ORDER = {d: i for i, d in enumerate(("U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16",
                                           "I16", "F8_E8M0", "F8_E4M3", "F8_E5M2", "I8", "U8", "F6_E3M2",
                                           "F6_E2M3", "F4", "BOOL"))}


def _check_output(out: Path, L: Checkpoint, S: Checkpoint) -> None:
    if out.resolve() in (L.path.resolve(), S.path.resolve()):
        raise HybridcotError(f"{out}: output must differ from the long and short folders")
    if out.exists() and not out.is_dir():
        raise HybridcotError(f"{out}: output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "merge.json").is_file():
        raise HybridcotError(f"{out}: output exists and is not a merge output (no merge.json); "
                             "choose a new folder or remove it")


def write_merge(long_dir: str | os.PathLike, short_dir: str | os.PathLike, output: str | os.PathLike,
                alpha: float = DEFAULT_ALPHA, *, cfg: MergeConfig | None = None) -> dict:
    """Check, merge and write the checkpoint at `output` atomically; returns what merge.json holds."""
    try:
        _check_alpha(alpha)
    except ValueError as e:
        raise HybridcotError(str(e)) from None
    L, S = check_compatible(long_dir, short_dir)
    out = Path(output).expanduser()
    _check_output(out, L, S)
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        nbytes = _stream(L, S, alpha, tmp)
        for name in COPY_FILES:
            if (L.path / name).is_file():
                shutil.copy2(L.path / name, tmp / name)
        dtypes = sorted({_DTYPE_NAMES.get(d, d) for d, _ in L.meta.values()})
        info = {"method": "linear", "formula": "θ_H = α·θ_L + (1 − α)·θ_S", "alpha": alpha,
                "long": str(L.path.resolve()), "short": str(S.path.resolve()), "n_tensors": len(L.meta),
                "n_shards": len(L.shards()), "bytes": nbytes, "dtypes": dtypes, "seconds": time.time() - t0}
        write_mergekit_yaml(tmp / "mergekit.yaml", L.path, S.path, alpha, dtypes[0] if len(dtypes) == 1 else None)
        if cfg is not None:
            save_config(cfg, tmp)
        write_json(tmp / "merge.json", info)
        swap_dir_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


# --------------------------------------------------------------------------- α sweep

def run_sweep(cfg: MergeConfig, L: Checkpoint, S: Checkpoint) -> tuple[dict, list[dict]]:
    """Evaluate every α of cfg.alpha_sweep on cfg.sweep_problems, merged in memory.

    Returns (the sweep.json content, every graded record with its "alpha").
    """
    import torch

    from hybridcot.data.problems import load_problems
    from hybridcot.evaluation.metrics import summarize
    from hybridcot.evaluation.stage import generate_records
    from hybridcot.generation import SamplingConfig
    from hybridcot.generation.hf import DTYPES, HFGenerator
    from hybridcot.models import load_causal_lm, load_tokenizer

    problems = load_problems(cfg.sweep_problems, limit=cfg.sweep_limit)
    if not problems:
        raise HybridcotError(f"{cfg.sweep_problems}: no problems for the alpha sweep")
    sd_l, sd_s = load_weights(L), load_weights(S)
    model = load_causal_lm(L.path, dtype=DTYPES[cfg.dtype])
    gen = HFGenerator(L.path, batch_size=cfg.batch_size, model=model, tokenizer=load_tokenizer(L.path),
                      progress=False)  # the sweep's own bar below, not one per generate call
    targets = gen.model.state_dict()  # shares storage with the parameters: copy_ updates the model
    bad = [n for n in sd_l if n not in targets or targets[n].shape != sd_l[n].shape]
    loaded = {targets[n].data_ptr() for n in sd_l if n not in bad}
    bad += [n for n in targets if n not in sd_l and targets[n].data_ptr() not in loaded]  # tied aliases are fine
    if bad:
        raise HybridcotError(f"{L.path}: model and checkpoint disagree on tensor '{bad[0]}'")
    params = SamplingConfig(n=1, temperature=0.0, max_tokens=cfg.max_tokens, seed=cfg.seed)
    entries, records = [], []
    print(f"{'alpha':>6} {'accuracy':>9} {'95% CI':>16} {'mean tokens':>12}")
    # One bar over every (α, problem) evaluation, the α being evaluated in its postfix.
    bar = progress(total=len(cfg.alpha_sweep) * len(problems), desc="alpha sweep", unit="problem")
    try:
        for a in cfg.alpha_sweep:
            t0 = time.time()
            bar.set_postfix_str(f"α={a:g}", refresh=False)
            with torch.no_grad():
                for name, tl in sd_l.items():
                    targets[name].copy_(interpolate(tl, sd_s[name], a, name))
            recs = generate_records(gen, problems, params, batch_size=cfg.batch_size, extra={"alpha": a},
                                    progress=bar)
            m = summarize(recs, seed=cfg.seed)
            entries.append({"alpha": a, **{k: m[k] for k in ("accuracy", "accuracy_ci", "mean_tokens", "mean_chars",
                                                              "thinking_ratio", "truncated", "per_level")},
                            "seconds": time.time() - t0})
            records += recs
            ci = m["accuracy_ci"]
            progress_write(f"{a:>6.2f} {m['accuracy']:>9.3f} {f'[{ci[0]:.3f}, {ci[1]:.3f}]':>16} "
                           f"{m['mean_tokens']:>12.1f}")
    finally:
        bar.close()
        gen.close()
    return {"long": str(L.path.resolve()), "short": str(S.path.resolve()), "problems": cfg.sweep_problems,
            "n_problems": len(problems), "max_tokens": cfg.max_tokens, "dtype": cfg.dtype, "backend": "hf",
            "seed": cfg.seed, "entries": entries}, records


def plot_sweep(entries: list[dict], path: str | os.PathLike) -> Path:
    """Accuracy (with 95% CI) and mean tokens against α, on two y axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [e["alpha"] for e in entries]
    ys = [e["accuracy"] for e in entries]
    err = [[max(0.0, y - (e["accuracy_ci"] or [y, y])[0]) for y, e in zip(ys, entries)],
           [max(0.0, (e["accuracy_ci"] or [y, y])[1] - y) for y, e in zip(ys, entries)]]
    ax.errorbar(xs, ys, yerr=err, marker="o", color="C0", capsize=3, label="accuracy")
    ax.set_xlabel("α (weight of the Long model)")
    ax.set_ylabel("accuracy (pass@1)", color="C0")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.plot(xs, [e["mean_tokens"] for e in entries], marker="s", color="C1", label="mean tokens")
    ax2.set_ylabel("mean generated tokens", color="C1")
    ax.set_title("merge α sweep")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return Path(path)


def run_merge(cfg: MergeConfig) -> dict:
    """The `hybridcot merge` stage: the sweep (if asked), then the checkpoint at cfg.alpha (if output is set)."""
    L, S = check_compatible(cfg.long, cfg.short)
    result: dict = {}
    sweep, records = run_sweep(cfg, L, S) if cfg.alpha_sweep else (None, [])
    if cfg.output:
        result["merge"] = info = write_merge(L.path, S.path, cfg.output, cfg.alpha, cfg=cfg)
        print(f"merged α = {cfg.alpha:g}: {info['n_tensors']} tensors, {info['bytes'] / 1e6:.1f} MB "
              f"in {info['seconds']:.1f}s -> {cfg.output}")
    if sweep is not None:
        out = Path(cfg.sweep_dir or cfg.output)
        write_jsonl(out / "sweep_samples.jsonl", records)
        write_json(out / "sweep.json", sweep)
        plot_sweep(sweep["entries"], out / "sweep.png")
        if not cfg.output or out.resolve() != Path(cfg.output).resolve():
            save_config(cfg, out)
        print(f"alpha sweep -> {out / 'sweep.json'}")
        result["sweep"] = sweep
    return result
