"""Every non-append artifact is written to a temp file (or folder) and renamed into place.

1. Stages for real, with `os.replace` failing on one artifact: the stage fails, and the artifact is
   either absent (a fresh output) or still the previous one byte for byte; no temp file is left. That
   the injected failure fires at all proves the artifact went through a rename (a direct write never
   calls os.replace). Artifacts: config.yaml, metrics.json, stats.json, pairs.jsonl, chunks.jsonl,
   report.md / report.json / plots, a merged checkpoint folder and a trained (sft) checkpoint folder.
2. A scan of src/ (the AST, not regexes) for direct writes outside hybridcot/io.py: open() in a
   writing mode, Path.write_text / write_bytes, os.fdopen, save_pretrained / savefig / ... to a path,
   shutil copies. The legitimate ones (into a temp folder that is renamed whole) are allow-listed
   with their reason.
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hybridcot.io import write_jsonl

SRC = Path(__file__).resolve().parents[2] / "src" / "hybridcot"


# ---------------------------------------------------------------- 1. failing renames

def snapshot(path: Path):
    """A file's bytes, a folder's {relative path: bytes}, or None when absent."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes() if path.exists() else None


def assert_atomic(monkeypatch: pytest.MonkeyPatch, run: Callable[[], object], target: Path) -> None:
    """`run()` with the rename onto `target` failing once: it must fail and leave `target` as it was."""
    before = snapshot(target)
    real = os.replace
    hits: list[str] = []

    def failing(src, dst, *a, **kw):
        if not hits and Path(dst).absolute() == target.absolute():
            hits.append(str(src))
            raise OSError(28, "injected: no space left on device")
        return real(src, dst, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", failing)
        with pytest.raises(OSError, match="injected"):
            run()
    assert hits, f"{target.name} was not written through a rename"
    assert snapshot(target) == before, f"{target.name} was changed by a failed write"
    left = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    assert left == [], f"temp files left beside {target.name}: {left}"


def _pair_inputs(tmp_path: Path) -> dict:
    probs, long, short = [], [], []
    for i in range(4):
        probs.append({"id": f"q{i}", "problem": f"What is {i} + 40?", "answer": str(i + 40), "level": 1})
        for j in range(4):
            long.append({"id": f"q{i}", "sample": j, "n_tokens": 30 + 7 * j, "text": f"long {i}.{j}",
                         "correct": j != 3})
            short.append({"id": f"q{i}", "sample": j, "n_tokens": 5 + j, "text": f"short {i}.{j}", "correct": j == 0})
    for name, rows in (("problems", probs), ("long", long), ("short", short)):
        write_jsonl(tmp_path / f"{name}.jsonl", rows)
    return {"long_samples": str(tmp_path / "long.jsonl"), "short_samples": str(tmp_path / "short.jsonl"),
            "problems": str(tmp_path / "problems.jsonl"), "output": str(tmp_path / "pairs")}


def test_pairs_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.adar1.pairs import PairsConfig, run_pairs

    files = _pair_inputs(tmp_path)
    out = tmp_path / "pairs"
    for name in ("config.yaml", "stats.json", "pairs.jsonl"):  # fresh output
        shutil.rmtree(out, ignore_errors=True)
        assert_atomic(monkeypatch, lambda: run_pairs(PairsConfig(**files)), out / name)
    run_pairs(PairsConfig(**files))
    for name in ("config.yaml", "stats.json", "pairs.jsonl"):  # replacing a finished output (another seed)
        assert_atomic(monkeypatch, lambda: run_pairs(PairsConfig(**files, seed=1)), out / name)


def test_chunk_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    from hybridcot.data import world as W
    from hybridcot.longshort.chunking import ChunkConfig, run_chunk

    rng = random.Random(0)
    probs = W.generate_problems(5, seed=5)
    write_jsonl(tmp_path / "w" / "data" / "train.jsonl", (p.to_record() for p in probs))
    write_jsonl(tmp_path / "w" / "data" / "train_long_thoughts.jsonl",
                ({"id": p.id, "thoughts": [t.__dict__ for t in W.write_long(p, rng)]} for p in probs))
    out = tmp_path / "chunks"

    def run(**kw):
        return run_chunk(ChunkConfig(input=str(tmp_path / "w"), output=str(out), **kw))

    for name in ("config.yaml", "chunks.jsonl", "stats.json"):
        shutil.rmtree(out, ignore_errors=True)
        assert_atomic(monkeypatch, run, out / name)
    run()
    for name in ("chunks.jsonl", "stats.json"):  # rewritten with other settings
        assert_atomic(monkeypatch, lambda: run(min_thought_tokens=50), out / name)


def test_importance_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.longshort.importance import CallableGenerator, ImportanceConfig, run_importance

    write_jsonl(tmp_path / "chunks.jsonl", [{"id": "p0", "problem": "What is 40+2?", "answer": "42", "level": 1,
                                             "thoughts": [{"text": "forty"}, {"text": "plus two"}]}])
    gen = CallableGenerator(lambda prompts, n: [["\\boxed{42}"] * n for _ in prompts])
    cfg = ImportanceConfig(chunks=str(tmp_path / "chunks.jsonl"), model="fake", output=str(tmp_path / "imp"), n=2)
    assert_atomic(monkeypatch, lambda: run_importance(cfg, generator=gen), tmp_path / "imp" / "config.yaml")
    assert_atomic(monkeypatch, lambda: run_importance(cfg, generator=gen), tmp_path / "imp" / "stats.json")
    run_importance(cfg, generator=gen)
    assert_atomic(monkeypatch, lambda: run_importance(cfg, generator=gen), tmp_path / "imp" / "stats.json")


def test_eval_and_report_artifacts(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.evaluation.report import ReportConfig, run_report
    from hybridcot.evaluation.stage import EvalConfig, run_eval

    out = tmp_path / "eval"
    cfg = EvalConfig(model=str(pico_model_dir), problems="world:test:3:seed=0", output=str(out), backend="hf",
                     max_tokens=8, n_boot=0)
    assert_atomic(monkeypatch, lambda: run_eval(cfg), out / "config.yaml")
    assert_atomic(monkeypatch, lambda: run_eval(cfg), out / "metrics.json")  # samples.jsonl is append-only
    run_eval(cfg)
    assert_atomic(monkeypatch, lambda: run_eval(cfg), out / "metrics.json")  # a rerun rewrites it

    rep = tmp_path / "report"
    rcfg = ReportConfig(runs=[str(out)], base="", output=str(rep))
    for name in ("accuracy_vs_tokens.png", "report.md", "report.json"):
        shutil.rmtree(rep, ignore_errors=True)
        assert_atomic(monkeypatch, lambda: run_report(rcfg), rep / name)


def test_merged_checkpoint_folder(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.merging import MergeConfig, run_merge

    short = tmp_path / "short"
    shutil.copytree(pico_model_dir, short)
    out = tmp_path / "merged"

    def run(alpha: float):
        return run_merge(MergeConfig(long=str(pico_model_dir), short=str(short), output=str(out), alpha=alpha))

    assert_atomic(monkeypatch, lambda: run(0.8), out)  # fresh: no folder at all
    run(0.8)
    assert_atomic(monkeypatch, lambda: run(0.5), out)  # replacing: the 0.8 merge stays whole


def test_trained_checkpoint_folder(tmp_path: Path, pico_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridcot.adar1.sft import SFTStageConfig, run_sft
    from hybridcot.data.world import generate_problems, write_short
    from hybridcot.generation import chat_prompt
    from hybridcot.training import trl_dir

    write_jsonl(tmp_path / "rows.jsonl", [{"prompt": chat_prompt(p.problem),
                                           "completion": [{"role": "assistant", "content": write_short(p)}]}
                                          for p in generate_problems(4, seed=3, levels=(1,))])
    out = tmp_path / "sft"
    kw = dict(model=str(pico_model_dir), data=str(tmp_path / "rows.jsonl"), output=str(out), learning_rate=1e-3,
              max_steps=1, per_device_train_batch_size=4, warmup_ratio=0.0, logging_steps=1, save_steps=1,
              max_length=128, use_cpu=True)
    assert_atomic(monkeypatch, lambda: run_sft(SFTStageConfig(**kw)), out)
    assert (trl_dir(out) / "checkpoint-1").is_dir()  # the failed save keeps the run resumable
    run_sft(SFTStageConfig(**kw))  # resumes: nothing left to train, saves
    assert (out / "hybridcot.json").is_file()
    # retraining over a finished output: the old checkpoint stays whole until the new one is in place
    assert_atomic(monkeypatch, lambda: run_sft(SFTStageConfig(**kw, force=True)), out)


# ---------------------------------------------------------------- 2. no direct writes in src/

# (file under src/hybridcot, enclosing function, call) -> why it is not a partial-file risk
ALLOWED = {
    ("training.py", "save_checkpoint", "save_pretrained"): "into a mkdtemp folder that is renamed into place whole",
    ("training.py", "save_checkpoint", "write_text"): "hybridcot.json inside that temp folder",
    ("models.py", "convert_gguf", "save_pretrained"): "into a temp folder renamed into place with its marker",
    ("data/world_models.py", "build_world", "save_pretrained"): "the tokenizer, into a mkdtemp folder then renamed",
    ("merging.py", "write_merge", "shutil.copy2"): "tokenizer files copied into the temp folder of the merge",
    ("merging.py", "_stream", "open"): "merged shards streamed into write_merge's temp folder (renamed whole)",
    ("longshort/rl.py", "publish", "shutil.copytree"): "built in a temp folder beside dst, then os.replace",
    ("longshort/rl.py", "publish.link", "shutil.copy2"): "publish's copy function (into its temp folder)",
    ("adar1/steps.py", "eval_step", "shutil.copytree"): "into a mkdtemp folder that is renamed into place",
    ("demo.py", "run_demo", "shutil.copytree"): "the world's eval folders, copied again at the start of every demo "
                                                "run before anything reads them (a kill mid-copy is redone)",
}
WRITING_MODE = set("wax+")
PATH_SINKS = {"write_text", "write_bytes", "save_pretrained", "savefig", "save_file", "to_parquet", "to_csv",
              "to_json", "save_to_disk", "save"}
SHUTIL_WRITES = {"copy", "copy2", "copyfile", "copytree", "move"}
OS_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


def _mode(call: ast.Call, pos: int) -> str | None:
    node = call.args[pos] if len(call.args) > pos else next((k.value for k in call.keywords if k.arg == "mode"), None)
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def direct_writes(tree: ast.AST) -> list[tuple[str, str, int]]:
    """(enclosing function, call, line) of every write that does not go through a temp-then-rename writer.

    A sink whose first argument is the handle of an enclosing `with atomic_write(...) as f` is fine.
    """
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, func: str, handles: frozenset[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = f"{func}.{node.name}" if func else node.name
        if isinstance(node, (ast.With, ast.AsyncWith)):
            new = {i.optional_vars.id for i in node.items
                   if isinstance(i.context_expr, ast.Call) and isinstance(i.optional_vars, ast.Name)
                   and getattr(i.context_expr.func, "id", getattr(i.context_expr.func, "attr", "")) == "atomic_write"}
            handles = handles | new
        if isinstance(node, ast.Call):
            f = node.func
            name = None
            if isinstance(f, ast.Name) and f.id == "open":
                mode = _mode(node, 1)
                name = "open" if mode and WRITING_MODE & set(mode) else None
            elif isinstance(f, ast.Attribute):
                owner = f.value.id if isinstance(f.value, ast.Name) else None
                first = node.args[0] if node.args else None
                to_handle = isinstance(first, ast.Name) and first.id in handles
                if f.attr == "open" and owner != "os":  # Path.open(mode)
                    mode = _mode(node, 0)
                    name = "Path.open" if mode and WRITING_MODE & set(mode) else None
                elif owner == "os" and f.attr == "fdopen":
                    name = "os.fdopen"
                elif owner == "os" and f.attr == "open":  # flagged only with a writing flag
                    flags = {n.attr for a in node.args[1:2] for n in ast.walk(a) if isinstance(n, ast.Attribute)}
                    name = "os.open" if flags & OS_WRITE_FLAGS else None
                elif owner == "shutil" and f.attr in SHUTIL_WRITES:
                    name = f"shutil.{f.attr}"
                elif f.attr in PATH_SINKS and not to_handle and not (f.attr == "save" and owner not in ("torch", "np")):
                    name = f.attr
            if name:
                found.append((func, name, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, func, handles)

    visit(tree, "", frozenset())
    return found


def test_the_scan_finds_direct_writes() -> None:
    bad = '''
def f(p, fig, model, data):
    with open(p, "w") as fh:
        fh.write("x")
    p.write_text("x")
    fig.savefig(p)
    model.save_pretrained(p)
    shutil.copy2(p, p)
    with Path(p).open(mode="ab") as g:
        g.write(b"x")
    os.open(p, os.O_WRONLY | os.O_CREAT)
'''
    good = '''
def g(p, fig):
    with open(p, "rb") as fh:
        fh.read()
    with atomic_write(p, "wb") as f:
        fig.savefig(f, format="png")
    write_json(p, {})
    os.open(p, os.O_RDONLY)
'''
    assert [c for _, c, _ in direct_writes(ast.parse(bad))] == ["open", "write_text", "savefig", "save_pretrained",
                                                                "shutil.copy2", "Path.open", "os.open"]
    assert direct_writes(ast.parse(good)) == []


def test_no_direct_writes_outside_io() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        if rel == "io.py":  # the writers themselves
            continue
        for func, call, line in direct_writes(ast.parse(path.read_text(encoding="utf-8"))):
            if (rel, func, call) not in ALLOWED:
                offenders.append(f"src/hybridcot/{rel}:{line} {func}: {call}")
    assert offenders == [], ("direct writes can leave a partial file after a crash; use hybridcot.io's "
                             "atomic_write / write_json / write_jsonl (or allow-list with a reason):\n  "
                             + "\n  ".join(offenders))
