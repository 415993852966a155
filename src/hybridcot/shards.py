"""Sharded stages: split a per-problem stage over n runs (machines, servers), then merge the parts.

    hybridcot eval model=ckpt problems=world:test:2000 output=runs/eval/long shard=0/4   # ... and 1/4, 2/4, 3/4
    hybridcot merge-shards output=runs/eval/long

`shard=i/n` (or `--shard i/n`) on `generate`, `eval`, `sample`, `importance` and `collaborate` keeps the
problems whose stable hash of the problem id (the first 8 bytes of its SHA-256, big-endian, mod n;
never Python's salted `hash`) is i. The problem set, `limit` and everything else are those of the
unsharded run, so the shards partition exactly its problems, and every sample is seeded as in
the unsharded run (from the seed, its prompt and its index), so the merged output equals it.

Where a shard writes: the stages with an output folder write shard i of n into its own folder
`<output>/shard-i-of-n/` (the stage's usual files for its problems: samples.jsonl / dialogues.jsonl /
importance.jsonl, metrics, config.yaml with `shard` in it); `generate`, whose output is one file,
writes `<output>.shard-i-of-n` (and its `.config.yaml`). Each shard resumes by id like the stage.

`merge-shards` (here `merge_shards`) reads every `shard-*-of-n` part of `output`, checks that their
configs agree (all keys but the deployment ones in `DEPLOYMENT_KEYS`), that they are n shards
0..n-1, and that together they hold every problem of the unsharded run once and complete (all
`n` samples); then writes the records in the unsharded order to `<output>/<data file>` (a temp file
renamed into place) and lets the stage itself write the metrics and config.yaml from it, as a
rerun of a finished unsharded output does (nothing is generated). A missing problem (a gap, e.g. a
shard that was killed), a problem in two shards or twice in one (a duplicate), a shard missing, or
two configs that differ is refused with one line naming the problem and the shards.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hybridcot.config import field, read_yaml_mapping, same_setting, save_config
from hybridcot.io import HybridcotError, iter_jsonl, write_jsonl
from hybridcot.ui import progress

# Config keys that say where / how a shard ran, not what it holds: they may differ between shards.
DEPLOYMENT_KEYS = ("shard", "output", "backend", "urls", "short_urls", "threads", "batch_size", "chunk",
                   "gpu_memory_utilization")
SHARD_STAGES = ("generate", "eval", "sample", "importance", "collaborate")
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_PART = re.compile(r"shard-(\d+)-of-(\d+)$")


class Shard(NamedTuple):
    index: int
    count: int

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


SHARD_HELP = ("run only shard i of n (e.g. 0/4): the problems whose stable id hash mod n is i, written to "
              "the shard's own output (<output>/shard-i-of-n/); join the n shards with hybridcot merge-shards")


def parse_shard(spec: Any) -> Shard | None:
    """"i/n" -> Shard(i, n); None or "" -> None. ValueError for anything else (0 <= i < n needed)."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, Shard):
        return spec
    m = _SPEC.fullmatch(str(spec))
    if not m:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {spec!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {spec!r}: need 0 <= i < n")
    return Shard(i, n)


def shard_of(problem_id: Any, count: int) -> int:
    """The shard (of `count`) a problem id belongs to: SHA-256 of str(id), first 8 bytes, mod count."""
    h = hashlib.sha256(str(problem_id).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % count


def in_shard(problem_id: Any, shard: Shard | None) -> bool:
    return shard is None or shard_of(problem_id, shard.count) == shard.index


def shard_folder(output: str | Path, shard: Shard | str | None) -> Path:
    """Where a folder stage writes: `output` itself unsharded, else `output/shard-i-of-n`."""
    sh = parse_shard(shard)
    return Path(output) if sh is None else Path(output) / sh.name


def shard_file(output: str | Path, shard: Shard | str | None) -> Path:
    """Where a file stage (generate) writes: `output` unsharded, else `output.shard-i-of-n`."""
    sh = parse_shard(shard)
    return Path(output) if sh is None else Path(f"{output}.{sh.name}")


# ---------------------------------------------------------------- merging

@dataclass
class MergeShardsConfig:
    """Join the shard outputs of a sharded stage run into the unsharded output."""

    output: str = field("", help="the output the shards were run with (a folder; a file for generate): its "
                                 "shard-i-of-n parts are merged into it")
    stage: str = field("auto", help="the stage that wrote the shards: auto (detected) | "
                                    + " | ".join(SHARD_STAGES))

    def __post_init__(self) -> None:
        if not str(self.output).strip():
            raise ValueError("output is required")
        if self.stage not in ("auto", *SHARD_STAGES):
            raise ValueError(f"stage must be one of {['auto', *SHARD_STAGES]}, got {self.stage!r}")


@dataclass
class _Part:
    shard: Shard
    path: Path  # shard folder (or shard file for generate)
    data: Path
    config: dict


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise HybridcotError(f"{path}: not found; was this shard started?")
    return read_yaml_mapping(path, "shard config")


def _data_name(stage: str) -> str:
    return {"collaborate": "dialogues.jsonl", "importance": "importance.jsonl"}.get(stage, "samples.jsonl")


def _find_parts(output: Path, stage: str) -> tuple[str, list[_Part]]:
    folders = sorted(p for p in output.glob("shard-*-of-*") if p.is_dir() and _PART.fullmatch(p.name)) \
        if output.is_dir() else []
    own = re.compile(re.escape(output.name) + r"\.shard-\d+-of-\d+")
    files = sorted(p for p in output.parent.glob(output.name + ".shard-*-of-*") if p.is_file() and own.fullmatch(p.name))
    if stage == "generate" or (stage == "auto" and files and not folders):
        found, stage = files, "generate"
    else:
        found = folders
    if not found:
        where = f"{output}.shard-*-of-*" if stage == "generate" else f"{output}/shard-*-of-*"
        raise HybridcotError(f"{output}: no shards found ({where})")
    shards = [Shard(int(m.group(1)), int(m.group(2))) for m in (_PART.search(p.name) for p in found)]
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        raise HybridcotError(f"{output}: shards of different counts ({', '.join(f'of {c}' for c in counts)}); "
                             "keep one split")
    n = counts[0]
    have = {s.index for s in shards}
    missing = [i for i in range(n) if i not in have]
    if missing:
        sh = Shard(missing[0], n)
        where = f"{output}.{sh.name}" if stage == "generate" else f"{output}/{sh.name}"
        raise HybridcotError(f"{output}: shard {sh} is missing ({where} not found); run it before merging")
    if stage == "auto":
        first = found[0]
        if (first / "sample_config.yaml").is_file():
            stage = "sample"
        else:
            keys = _read_yaml(first / "config.yaml")
            if (first / "dialogues.jsonl").exists() or "long_model" in keys:
                stage = "collaborate"
            elif (first / "importance.jsonl").exists() or "chunks" in keys:
                stage = "importance"
            else:
                stage = "eval"
    parts = []
    for s, p in sorted(zip(shards, found)):
        if stage == "generate":
            cfg = _read_yaml(p.with_name(p.name + ".config.yaml"))
            data = p
        else:
            cfg = _read_yaml(p / ("sample_config.yaml" if stage == "sample" else "config.yaml"))
            data = p / _data_name(stage)
        if str(parse_shard(cfg.get("shard"))) != str(s):
            raise HybridcotError(f"{p}: its config says shard={cfg.get('shard')!r}, not {s}")
        parts.append(_Part(s, p, data, cfg))
    return stage, parts


def _common_config(parts: list[_Part]) -> dict:
    first = parts[0]
    for p in parts[1:]:
        for k in sorted(set(first.config) | set(p.config)):
            if k in DEPLOYMENT_KEYS:
                continue
            if first.config.get(k) != p.config.get(k):
                raise HybridcotError(f"shards differ: {first.shard.name} has {k}={first.config.get(k)!r}, "
                                     f"{p.shard.name} has {k}={p.config.get(k)!r}; rerun one with the other's config")
    return {**first.config, "shard": None}


def _expected(stage: str, cfg: dict) -> tuple[list[Any], int | None]:
    """The unsharded run's keys in order, and the records per key (None: one record per key)."""
    if stage == "importance":
        from hybridcot.io import read_jsonl

        recs = read_jsonl(cfg["chunks"])[:cfg.get("limit")]
        return [(str(r.get("id")), r.get("sample")) for r in recs], None
    if stage == "generate":
        from hybridcot.data.problems import load_problems

        return [str(p.id) for p in load_problems(cfg["problems"], limit=cfg.get("limit"))], None
    from hybridcot.evaluation.stage import load_run_problems

    _, ids = load_run_problems(cfg["problems"], cfg.get("limit"))
    n = cfg.get("k") if stage == "sample" else cfg.get("n")
    return ids, int(n)


def _key(stage: str, rec: dict) -> Any:
    if stage == "importance":
        return str(rec.get("id")), rec.get("sample")
    return str(rec.get("id"))


def _label(key: Any) -> str:
    if isinstance(key, tuple):
        return f"{key[0]!r}" + (f" (sample {key[1]})" if key[1] is not None else "")
    return repr(key)


def merge_records(stage: str, parts: list[_Part], keys: list[Any], per_key: int | None) -> list[dict]:
    """Every record of the shards in the unsharded order; one line for a duplicate, a stray or a gap."""
    expected = set(keys)
    where: dict[Any, Shard] = {}
    groups: dict[Any, dict[int, dict]] = {}
    for part in progress(parts, desc=f"merge-shards {stage}", unit="shard"):
        if not part.data.exists():
            raise HybridcotError(f"{part.data}: not found; run shard {part.shard} (it resumes) before merging")
        for line, rec in iter_jsonl(part.data, allow_torn_tail=True):
            key = _key(stage, rec)
            sample = int(rec.get("sample", 0)) if per_key is not None else 0
            if key in where and where[key] != part.shard:
                raise HybridcotError(f"duplicate: problem {_label(key)} is in {where[key].name} and {part.shard.name}")
            if sample in groups.get(key, {}):
                what = f"problem {_label(key)}" + (f" sample {sample}" if per_key is not None else "")
                raise HybridcotError(f"duplicate: {what} appears twice in {part.data} (line {line})")
            if key not in expected:
                raise HybridcotError(f"{part.data}:{line}: problem {_label(key)} is not in the run's problem set")
            pid = key[0] if isinstance(key, tuple) else key
            if shard_of(pid, part.shard.count) != part.shard.index:
                raise HybridcotError(f"{part.data}:{line}: problem {_label(key)} belongs to shard "
                                     f"{shard_of(pid, part.shard.count)}/{part.shard.count}, not {part.shard}")
            where[key] = part.shard
            groups.setdefault(key, {})[sample] = rec
    for key in keys:
        pid = key[0] if isinstance(key, tuple) else key
        owner = Shard(shard_of(pid, parts[0].shard.count), parts[0].shard.count)
        got = groups.get(key)
        if not got:
            raise HybridcotError(f"gap: problem {_label(key)} is missing from {owner.name} "
                                 f"(a killed shard? rerun shard {owner} to finish it, it resumes)")
        if per_key is not None and set(got) != set(range(per_key)):
            raise HybridcotError(f"gap: problem {_label(key)} has {len(got)} of {per_key} samples in {owner.name} "
                                 f"(a killed shard? rerun shard {owner} to finish it, it resumes)")
    return [groups[k][j] for k in keys for j in sorted(groups[k])]


def _finalize(stage: str, cfg: dict, output: Path) -> Any:
    """Let the stage write its metrics and config from the merged data (it generates nothing)."""
    from hybridcot.config import config_fields

    if stage == "eval":
        from hybridcot.evaluation.stage import EvalConfig as C
        from hybridcot.evaluation.stage import run_eval as run
    elif stage == "sample":
        from hybridcot.adar1.sample import SampleConfig as C
        from hybridcot.adar1.sample import run_sample as run
    elif stage == "importance":
        from hybridcot.longshort.importance import ImportanceConfig as C
        from hybridcot.longshort.importance import run_importance as run
    elif stage == "collaborate":
        from hybridcot.longshort.collaborate import CollaborateConfig as C
        from hybridcot.longshort.collaborate import run_collaborate as run
    else:
        from hybridcot.generation.stage import GenerateConfig as C
        from hybridcot.generation.stage import config_path

        fields = config_fields(C)
        gcfg = C(**{k: v for k, v in {**cfg, "output": str(output)}.items() if k in fields})
        save_config(gcfg, output.parent, name=config_path(output).name)
        return None
    fields = config_fields(C)
    try:
        scfg = C(**{k: v for k, v in {**cfg, "output": str(output)}.items() if k in fields})
    except (TypeError, ValueError) as e:
        raise HybridcotError(f"{output}: the shards' config does not load: {e}") from None
    return run(scfg)


def _check_target(stage: str, output: Path, cfg: dict) -> None:
    """Refuse to overwrite an unsharded output made with another config."""
    if stage == "generate":
        from hybridcot.generation.stage import config_path

        prev = config_path(output)
    else:
        prev = output / ("sample_config.yaml" if stage == "sample" else "config.yaml")
    if not prev.is_file():
        return
    old = _read_yaml(prev)
    for k in sorted(set(old) & set(cfg)):
        if k not in DEPLOYMENT_KEYS and not same_setting(old[k], cfg[k]):
            raise HybridcotError(f"{output}: already holds a run with {k}={old[k]!r} (the shards have "
                                 f"{cfg[k]!r}); merge into another output or delete it")


def merge_shards(output: str | Path, stage: str = "auto") -> Path:
    """Merge `output`'s shards into `output` (see the module docstring); returns the merged data file."""
    output = Path(output)
    stage, parts = _find_parts(output, stage)
    cfg = _common_config(parts)
    keys, per_key = _expected(stage, cfg)
    records = merge_records(stage, parts, keys, per_key)
    target = output if stage == "generate" else output / _data_name(stage)
    _check_target(stage, output, {**cfg, "output": str(output)})
    target.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(target, records)  # a temp file beside it, renamed into place
    _finalize(stage, cfg, output)
    print(f"merge-shards: {stage}, {len(parts)} shards, {len(keys)} problems, {len(records)} records -> {target}")
    return target


def run_merge_shards(cfg: MergeShardsConfig) -> Path:
    return merge_shards(cfg.output, cfg.stage)
