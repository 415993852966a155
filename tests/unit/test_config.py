"""config.py: defaults < YAML < key=value, one-line errors naming file and key, save/load round trip, describe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml

from hybridcot.config import config_dict, config_fields, describe, field, load_config, save_config
from hybridcot.io import HybridcotError


@dataclass
class ToyConfig:
    """Every annotation kind the stage configs use."""

    model: str = field("base", help="model folder")
    steps: int = field(10, help="optimizer steps")
    lr: float = field(1e-4, help="peak learning rate")
    beta: float | None = field(None, help="DPO beta (None = paper default)")
    limit: int | None = field(None, help="first N problems only")
    fast: bool = field(False, help="take the fast path")
    levels: list[int] = field([1, 2, 3], help="levels to use")
    names: list[str] = field([], help="system names")
    extra: list[str] | None = field(None, help="optional list")
    tag: str | None = field(None, help="optional tag")
    meta: dict = field({}, help="free-form mapping")
    mode: Literal["group", "instance"] = field("group", help="pair kind")

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")


@dataclass
class NeedsModel:
    model: str = field(help="required model folder")
    n: int = field(1, help="samples")


def _yaml(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_then_yaml_then_overrides(tmp_path: Path) -> None:
    assert load_config(ToyConfig) == ToyConfig()
    y = _yaml(tmp_path, "model: from-yaml\nsteps: 20\nlr: 0.5\nfast: true\n")
    cfg = load_config(ToyConfig, y, ["steps=30", "levels=4,5"])
    assert (cfg.model, cfg.steps, cfg.lr, cfg.fast, cfg.levels) == ("from-yaml", 30, 0.5, True, [4, 5])
    assert cfg.beta is None and cfg.names == []  # untouched fields keep defaults
    # base dict (a recipe) sits under the YAML file
    cfg = load_config(ToyConfig, y, base={"model": "recipe", "limit": 3})
    assert (cfg.model, cfg.limit) == ("from-yaml", 3)


def test_mutable_defaults_are_not_shared() -> None:
    a, b = ToyConfig(), ToyConfig()
    a.levels.append(9)
    a.meta["k"] = 1
    assert b.levels == [1, 2, 3] and b.meta == {}


def test_int_is_coerced_to_float_and_dashes_become_underscores(tmp_path: Path) -> None:
    cfg = load_config(ToyConfig, _yaml(tmp_path, "lr: 1\n"), ["fast=yes"])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.fast is True
    @dataclass
    class Dashed:
        max_tokens: int = field(5, help="x")
    assert load_config(Dashed, None, ["max-tokens=7"]).max_tokens == 7


@pytest.mark.parametrize("value", ["1e-5", "3E-4", "-2.5e+3", ".5"])
def test_float_accepts_exponent_forms_that_yaml_reads_as_strings(tmp_path: Path, value: str) -> None:
    # PyYAML (YAML 1.1) loads "1e-5" as a string; a learning rate written that way must still work.
    assert load_config(ToyConfig, None, [f"lr={value}"]).lr == float(value)
    assert load_config(ToyConfig, _yaml(tmp_path, f"lr: {value}\n")).lr == float(value)
    assert load_config(ToyConfig, None, [f"beta={value}"]).beta == float(value)


def test_string_overrides_are_taken_verbatim() -> None:
    cfg = load_config(ToyConfig, None, ["model=1.10", "tag=no", "names=0123,1.50,x", "mode=instance"])
    assert (cfg.model, cfg.tag, cfg.names, cfg.mode) == ("1.10", "no", ["0123", "1.50", "x"], "instance")
    assert load_config(ToyConfig, None, ["model=a #b"]).model == "a #b"
    assert load_config(ToyConfig, None, ["model="]).model == ""


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "model: m\nstepz: 3\n", name="stage.yaml")
    with pytest.raises(HybridcotError, match=r"stage\.yaml: unknown key 'stepz' for ToyConfig \(did you mean steps\?\)"):
        load_config(ToyConfig, y)
    with pytest.raises(HybridcotError, match=r"command line: unknown key 'bogus' for ToyConfig$"):
        load_config(ToyConfig, None, ["bogus=1"])


@pytest.mark.parametrize(("override", "pattern"), [
    ("steps=ten", r"steps: expected an integer, got 'ten'"),
    ("steps=2.5", r"steps: expected an integer, got 2\.5"),
    ("steps=true", r"steps: expected an integer, got True"),
    ("lr=fast", r"lr: expected a number, got 'fast'"),
    ("fast=2", r"fast: expected true/false, got 2"),
    ("levels=1,x", r"levels\[1\]: expected an integer, got 'x'"),
    ("meta=5", r"meta: expected a mapping, got int"),
    ("mode=pairs", r"mode: must be one of \['group', 'instance'\], got 'pairs'"),
    ("limit=many", r"limit: expected an integer, got 'many'"),
])
def test_wrong_type_names_the_key(override: str, pattern: str) -> None:
    with pytest.raises(HybridcotError, match=pattern) as e:
        load_config(ToyConfig, None, [override])
    assert str(e.value).startswith("command line: ") and "\n" not in str(e.value)


def test_wrong_type_in_yaml_names_file_and_key(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "steps: '12'\n", name="s.yaml")
    with pytest.raises(HybridcotError, match=r"s\.yaml: steps: expected an integer, got '12'"):
        load_config(ToyConfig, y)
    y = _yaml(tmp_path, "levels: 3\n", name="l.yaml")
    with pytest.raises(HybridcotError, match=r"l\.yaml: levels: expected a list, got int 3"):
        load_config(ToyConfig, y)


def test_list_fields_from_comma_strings_and_yaml_lists(tmp_path: Path) -> None:
    cfg = load_config(ToyConfig, None, ["levels=5,4,,3", "names=long,short", "extra=a"])
    assert (cfg.levels, cfg.names, cfg.extra) == ([5, 4, 3], ["long", "short"], ["a"])
    # one item on the command line is a one-item list; a YAML flow list works too
    cfg = load_config(ToyConfig, None, ["levels=5", "names=solo", "extra=[x, y]"])
    assert (cfg.levels, cfg.names, cfg.extra) == ([5], ["solo"], ["x", "y"])
    cfg = load_config(ToyConfig, _yaml(tmp_path, "levels: [2, 3]\nnames: 'a,b'\n"))
    assert (cfg.levels, cfg.names) == ([2, 3], ["a", "b"])


def test_optional_fields_accept_null(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "limit: 5\nbeta: 0.1\ntag: t\nextra: [x]\n")
    cfg = load_config(ToyConfig, y, ["limit=null", "beta=~", "tag=null", "extra=null"])
    assert (cfg.limit, cfg.beta, cfg.tag, cfg.extra) == (None, None, None, None)
    cfg = load_config(ToyConfig, _yaml(tmp_path, "limit: null\ntag:\n", name="n.yaml"))
    assert cfg.limit is None and cfg.tag is None
    with pytest.raises(HybridcotError, match="steps: expected an integer, got None"):
        load_config(ToyConfig, None, ["steps=null"])


def test_post_init_value_error_becomes_hybridcot_error(tmp_path: Path) -> None:
    y = _yaml(tmp_path, "steps: -1\n", name="neg.yaml")
    with pytest.raises(HybridcotError, match=r"neg\.yaml: steps must be >= 0"):
        load_config(ToyConfig, y)
    with pytest.raises(HybridcotError, match=r"^config: steps must be >= 0$"):
        load_config(ToyConfig, None, ["steps=-3"])


def test_missing_required_key_is_named() -> None:
    with pytest.raises(HybridcotError, match=r"missing required key 'model' for NeedsModel"):
        load_config(NeedsModel, None, ["n=2"])
    assert load_config(NeedsModel, None, ["model=m"]).model == "m"


def test_bad_files_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(HybridcotError, match=r"nope\.yaml: config file not found"):
        load_config(ToyConfig, tmp_path / "nope.yaml")
    with pytest.raises(HybridcotError, match=r"bad\.yaml:2: invalid YAML"):
        load_config(ToyConfig, _yaml(tmp_path, "model: x\n  steps: [\n", name="bad.yaml"))
    with pytest.raises(HybridcotError, match=r"list\.yaml: expected a mapping of config keys at top level"):
        load_config(ToyConfig, _yaml(tmp_path, "- 1\n- 2\n", name="list.yaml"))
    assert load_config(ToyConfig, _yaml(tmp_path, "", name="empty.yaml")) == ToyConfig()
    with pytest.raises(HybridcotError, match=r"override 'steps': expected key=value"):
        load_config(ToyConfig, None, ["steps"])


def test_save_config_round_trip(tmp_path: Path) -> None:
    cfg = load_config(ToyConfig, None, ["model=ΔA model", "lr=1e-5", "beta=0.1", "levels=5", "names=a,b",
                                        "tag=1.10", "meta={a: 1, b: [x]}", "mode=instance", "fast=true"])
    out = save_config(cfg, tmp_path / "run")
    assert out == tmp_path / "run" / "config.yaml"
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == config_dict(cfg)
    assert load_config(ToyConfig, out) == cfg
    assert load_config(ToyConfig, save_config(ToyConfig(), tmp_path, name="d.yaml")) == ToyConfig()


def test_describe_lists_every_field_with_type_default_and_help() -> None:
    text = describe(ToyConfig)
    lines = text.splitlines()
    fields = config_fields(ToyConfig)
    assert len(lines) == len(fields)
    for line, (name, (_, f)) in zip(lines, fields.items()):
        assert line.startswith(f"  {name} (") and line.endswith(f"): {f.metadata['help']}")
    assert "  steps (int, default 10): optimizer steps" in lines
    assert "  levels (list[int], default [1, 2, 3]): levels to use" in lines
    assert "  limit (int | None, default None): first N problems only" in lines
    assert "(required)" in describe(NeedsModel)


def test_field_keeps_help_metadata() -> None:
    f = {x.name: x for x in dataclasses.fields(ToyConfig)}
    assert f["lr"].metadata["help"] == "peak learning rate"
    assert f["levels"].default is dataclasses.MISSING and f["levels"].default_factory() == [1, 2, 3]


def test_same_setting_accepts_two_spellings_of_one_path_only(tmp_path, monkeypatch) -> None:
    from hybridcot.config import same_setting

    monkeypatch.chdir(tmp_path)
    assert same_setting("runs/x/samples", str(tmp_path / "runs" / "x" / "samples"))
    assert same_setting(["runs/a", "b/c"], [str(tmp_path / "runs/a"), "./b/c"])
    assert same_setting(0.6, 0.6) and same_setting(None, None)
    assert not same_setting("runs/x", "runs/y")
    assert not same_setting("runs/x", str(tmp_path.parent / "runs" / "x"))  # another folder of that name
    assert not same_setting("auto", "hf") and not same_setting(0.6, 0.7)
    assert not same_setting(["runs/a"], ["runs/a", "runs/b"])


def test_a_finished_step_resumes_under_another_spelling_of_its_folder(tmp_path, monkeypatch) -> None:
    """AdaR1's steps compare what an output was made with to the recipe: "runs/x" then "/abs/runs/x"
    is the same input (it refused that before), another folder still refuses."""
    from hybridcot.adar1.steps import _finished_unchanged
    from hybridcot.io import HybridcotError

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "pairs.jsonl").write_text("{}\n")
    (out / "config.yaml").write_text("long_samples: runs/x/samples/long\nm1: 4\n")
    assert _finished_unchanged(out, "pairs.jsonl", "config.yaml",
                               {"long_samples": str(tmp_path / "runs/x/samples/long"), "m1": 4}, ["long_samples", "m1"])
    with pytest.raises(HybridcotError, match="long_samples"):
        _finished_unchanged(out, "pairs.jsonl", "config.yaml", {"long_samples": "runs/y/samples/long", "m1": 4},
                            ["long_samples", "m1"])
