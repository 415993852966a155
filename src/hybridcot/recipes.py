"""Recipes: one YAML file that chains stages for one setting (`recipes/tiny/`, `recipes/qwen-7b/`, ...).

    hybridcot adar1 --recipe recipes/tiny/adar1.yaml dpo.learning_rate=1e-4 sample.k=4 output=runs/x

A recipe is a mapping of top-level keys (the chain's own config dataclass, e.g. `AdaR1Config`)
where some keys are *sections*: mappings holding one stage's config keys (`merge:`, `sample:`,
`dpo:`, ...). Each section is checked against its stage's `*Config` dataclass with
`hybridcot.config.load_config`, so an unknown key or a wrong type fails with one line naming the
recipe file and the dotted key (`recipes/tiny/adar1.yaml: dpo.beta: expected a number, got 'x'`).
Keys that the chain fills in itself (a stage's input and output paths) are refused in a section.

Command-line overrides use dotted paths: `dpo.learning_rate=1e-4` sets a key of a section,
`output=runs/x` a top-level key, `world=null` clears a section. Values are parsed as the target
field's type wants (YAML for numbers, lists and null; strings verbatim).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from hybridcot.config import _parse_override, config_fields, load_config, read_yaml_mapping
from hybridcot.io import HybridcotError

C = TypeVar("C")
CHAIN = "<set by the chain>"  # placeholder for keys the chain fills in when a section is only validated


@dataclasses.dataclass(frozen=True)
class Section:
    """A recipe section: the stage config it must validate as, and the keys the chain fills in."""

    cls: type
    filled: tuple[str, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # chain-only keys -> annotation

    def split(self, values: Mapping[str, Any]) -> tuple[dict, dict]:
        """(keys of the stage config, chain-only extra keys) of a section's values."""
        extra = {k: v for k, v in values.items() if k in self.extra}
        return {k: v for k, v in values.items() if k not in self.extra}, extra


def read_yaml(path: str | Path) -> dict:
    """A recipe file's top-level mapping, or one line naming the file (and line) that is wrong."""
    return read_yaml_mapping(path, "recipe")


def section_config(section: Section, values: Mapping[str, Any] | None, name: str, *,
                   filled: Mapping[str, Any] | None = None) -> Any:
    """Build `section.cls` from a section's values plus the chain's `filled` keys.

    Without `filled`, the chain keys get a placeholder (validation only). Errors are one line
    starting with the dotted key (`dpo.beta: ...`); callers add the file name.
    """
    values = dict(values or {})
    if not isinstance(values, dict):
        raise HybridcotError(f"{name}: expected a mapping of {section.cls.__name__} keys")
    fields = config_fields(section.cls)
    for k in values:
        key = str(k).replace("-", "_")
        if key in section.filled:
            raise HybridcotError(f"{name}.{k}: set by the chain, not in a recipe section")
        if key not in fields and key not in section.extra:
            close = [n for n in [*fields, *section.extra] if n.startswith(key[:3]) and n not in section.filled]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise HybridcotError(f"{name}.{k}: unknown key for {section.cls.__name__}{hint}")
    stage_values, _ = section.split(values)
    if filled is None:  # validation only: a placeholder path, or the field's own default (pairs.include)
        filled = {k: fields[k][1].default if fields[k][1].default not in (dataclasses.MISSING, "", None) else CHAIN
                  for k in section.filled}
    base = {**stage_values, **filled}
    try:
        return load_config(section.cls, base=base)
    except HybridcotError as e:
        msg = _without_source(str(e))
        key = next((k for k in base if msg.startswith(f"{k}: ") or msg.startswith(f"{k}=")), None)
        raise HybridcotError(f"{name}.{msg}" if key else f"{name}: {msg}") from None


def check_extra(section: Section, values: Mapping[str, Any] | None, name: str) -> dict:
    """The chain-only keys of a section, type-checked against `section.extra` annotations."""
    from hybridcot.config import _check_type

    _, extra = section.split(dict(values or {}))
    return {k: _check_type(v, section.extra[k], f"{name}.{k}") for k, v in extra.items()}


def _field_type(cls: type, path: list[str], sections: Mapping[str, Section]) -> Any:
    """The annotation a dotted key points at (Any where unknown: the validation names it later)."""
    top = config_fields(cls)
    if len(path) == 1:
        return top[path[0]][0] if path[0] in top else Any
    sec = sections.get(path[0])
    if sec is None or len(path) != 2:
        return Any
    if path[1] in sec.extra:
        return sec.extra[path[1]]
    fields = config_fields(sec.cls)
    return fields[path[1]][0] if path[1] in fields else Any


def apply_overrides(data: dict, overrides: list[str] | None, cls: type,
                    sections: Mapping[str, Section] | None = None) -> dict:
    """A copy of `data` with `a.b=value` overrides applied (values parsed for the target's type)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for ov in overrides or []:
        if "=" not in ov:
            raise HybridcotError(f"override '{ov}': expected key=value (dotted for a section: dpo.beta=0.1)")
        key, value = ov.split("=", 1)
        path = [p.strip().replace("-", "_") for p in key.strip().split(".")]
        if not all(path) or len(path) > 2:
            raise HybridcotError(f"override '{ov}': key must be 'name' or 'section.name'")
        parsed = _parse_override(value, _field_type(cls, path, sections or {}))
        if len(path) == 1:
            out[path[0]] = parsed
            continue
        sec = out.get(path[0])
        if sec is None:
            sec = out[path[0]] = {}
        if not isinstance(sec, dict):
            raise HybridcotError(f"override '{ov}': '{path[0]}' is not a section (a mapping)")
        sec[path[1]] = parsed
    return out


def load_recipe(cls: type[C], path: str | Path | None, overrides: list[str] | None = None) -> C:
    """The chain config `cls` from a recipe file plus dotted `key=value` overrides.

    `cls` may define `SECTIONS` (a ClassVar mapping section name -> Section); its `__post_init__`
    is expected to validate them (see `validate_sections`). Errors caused by the file name the
    file; errors caused by an override say "command line".
    """
    sections = getattr(cls, "SECTIONS", {})
    data = read_yaml(path) if path is not None else {}
    if path is not None and "recipe" in config_fields(cls) and "recipe" not in data:
        data["recipe"] = str(path)
    if not overrides:
        return _build(cls, data, str(path) if path is not None else "recipe")
    try:
        return _build(cls, apply_overrides(data, overrides, cls, sections), "command line")
    except HybridcotError as e:
        if path is not None:  # the same error from the file alone: name the file, not the command line
            try:
                _build(cls, data, str(path))
            except HybridcotError as f:
                if str(f).removeprefix(f"{path}: ") == str(e).removeprefix("command line: "):
                    raise f from None
        raise


def _without_source(msg: str) -> str:
    """load_config's message without its 'recipe: ' / 'config: ' source, which the caller names better."""
    for prefix in ("recipe: ", "config: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _build(cls: type[C], data: dict, where: str) -> C:
    try:
        return load_config(cls, base=data)
    except HybridcotError as e:
        msg = _without_source(str(e))
        raise HybridcotError(f"{where}: {msg}") from None


def validate_sections(cfg: Any) -> None:
    """Check every section of a chain config (called from its __post_init__; raises ValueError)."""
    for name, sec in getattr(type(cfg), "SECTIONS", {}).items():
        values = getattr(cfg, name)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{name}: expected a mapping of {sec.cls.__name__} keys, got {type(values).__name__}")
        try:
            section_config(sec, values, name)
            check_extra(sec, values, name)
        except HybridcotError as e:
            raise ValueError(str(e)) from None

