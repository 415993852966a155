"""Stage configs: dataclasses with help text, loaded from YAML plus `key=value` overrides.

Each stage has a `*Config` dataclass (fields carry `metadata={"help": ...}` and `__post_init__`
validates them, TRL style). `load_config` merges, in order: field defaults, a YAML file, then
command-line overrides; unknown keys and wrong types are rejected with one line naming the file
and key. Every output folder gets the resolved config (`save_config`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hybridcot.io import HybridcotError, atomic_write

C = TypeVar("C")

# YAML 1.1 (PyYAML) reads "1e-5" as a string; a float field accepts it and other plain numerals.
_FLOAT_RE = re.compile(r"[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity)", re.I)
_YAML_NULLS = ("", "~", "null", "Null", "NULL")


def field(default: Any = dataclasses.MISSING, help: str = "", **kw) -> Any:  # noqa: A002
    """A dataclass field with help text; mutable defaults are wrapped in a factory."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Coerce `value` to annotation `tp` where lossless (int -> float); otherwise raise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except HybridcotError as e:
                errors.append(str(e))
        raise HybridcotError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise HybridcotError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        inner = args[0] if args else Any
        if isinstance(value, str):  # "a,b,c" on the command line
            value = [v for v in value.split(",") if v != ""]
            value = [v if _wants_raw_str(inner) else yaml.safe_load(v) for v in value]
        if not isinstance(value, (list, tuple)):
            raise HybridcotError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise HybridcotError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise HybridcotError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise HybridcotError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HybridcotError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise HybridcotError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _wants_raw_str(tp: Any) -> bool:
    """Whether a command-line value for `tp` is best taken verbatim (str, Literal of str).

    YAML would turn `name=1.10` into 1.1, `rev=0123` into 83 and `name=no` into False.
    """
    if tp is str:
        return True
    if typing.get_origin(tp) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    return False


def _parse_override(v: str, tp: Any) -> Any:
    """A `key=value` string as the value for a field annotated `tp`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp) and v in _YAML_NULLS[1:]:
            return None
        if len(args) == 1:
            tp = args[0]
    if _wants_raw_str(tp) or v == "":
        return v
    if typing.get_origin(tp) in (list, tuple) and not v.lstrip().startswith("["):
        return v  # "a,b,c" (and "5", a one-item list) is split by _check_type
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def config_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls) if f.init}


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """A YAML file's top-level mapping, or one line naming the file (and line) that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise HybridcotError(f"{path}: {what} file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise HybridcotError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError as e:
        raise HybridcotError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    if not isinstance(data, dict):
        raise HybridcotError(f"{path}: expected a mapping of {what} keys at top level")
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> C:
    """Build `cls` from defaults < `base` dict < YAML file < `key=value` overrides."""
    fields = config_fields(cls)
    values: dict[str, Any] = {}

    def put(src: dict, where: str) -> None:
        for k, v in src.items():
            key = k.replace("-", "_")
            if key not in fields:
                close = [n for n in fields if n.startswith(key[:3])]
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise HybridcotError(f"{where}: unknown key '{k}' for {cls.__name__}{hint}")
            values[key] = _check_type(v, fields[key][0], f"{where}: {k}")

    if base:
        put(base, "recipe")
    if path is not None:
        put(read_yaml_mapping(path, "config"), str(path))
    for ov in overrides or []:
        if "=" not in ov:
            raise HybridcotError(f"override '{ov}': expected key=value")
        k, v = ov.split("=", 1)
        k = k.strip()
        field_tp = fields[k.replace("-", "_")][0] if k.replace("-", "_") in fields else Any
        put({k: _parse_override(v, field_tp)}, "command line")
    missing = [n for n, (_, f) in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise HybridcotError(f"{path or 'config'}: missing required key '{missing[0]}' for {cls.__name__}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise HybridcotError(f"{path or 'config'}: {e}") from None


def same_setting(old: Any, new: Any) -> bool:
    """Whether a setting an output was made with (`old`, read back from its config) equals the one
    asked for now: equal values, or two spellings of one path ("runs/x" from the working folder and
    "/abs/runs/x"), so a resumed stage does not refuse its own output over how a folder was written.
    Lists compare element by element."""
    if old == new:
        return True
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return len(old) == len(new) and all(same_setting(a, b) for a, b in zip(old, new))
    if isinstance(old, str) and isinstance(new, str) and old and new and ("/" in old or "/" in new):
        return os.path.abspath(os.path.expanduser(old)) == os.path.abspath(os.path.expanduser(new))
    return False


def config_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config next to a stage's outputs."""
    out = Path(out_dir) / name
    with atomic_write(out) as f:
        yaml.safe_dump(config_dict(cfg), f, sort_keys=False, allow_unicode=True)
    return out


def describe(cls: type) -> str:
    """Help text for a config class: one line per field with type, default and help."""
    lines = []
    for name, (tp, f) in config_fields(cls).items():
        if f.default is not dataclasses.MISSING:
            d = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            d = f.default_factory()  # type: ignore[misc]
        else:
            d = "(required)"
        tname = tp.__name__ if typing.get_origin(tp) is None and hasattr(tp, "__name__") \
            else str(tp).replace("typing.", "")
        lines.append(f"  {name} ({tname}, default {d!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)
