"""The demo's output folder when the world under it changes (e.g. a new default preset)."""

from __future__ import annotations

from pathlib import Path

from hybridcot.demo import set_aside_other_world
from hybridcot.io import write_json


def _demo_on(out: Path, world: Path) -> None:
    (out / "adar1").mkdir(parents=True)
    (out / "adar1" / "chain.json").write_text("{}")
    write_json(out / "world.json", {"world": str(world)})


def test_a_demo_made_on_another_world_is_moved_aside_whole(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    _demo_on(out, tmp_path / "default-36e12294b3a8")
    aside = set_aside_other_world(out, tmp_path / "default-9d37816d3224")
    assert aside == tmp_path / "demo-default-36e12294b3a8"
    assert not out.exists() and (aside / "adar1" / "chain.json").read_text() == "{}"  # nothing lost

    _demo_on(out, tmp_path / "default-36e12294b3a8")  # the same old world again: a second name
    assert set_aside_other_world(out, tmp_path / "w") == tmp_path / "demo-default-36e12294b3a8-2"


def test_a_demo_on_the_same_world_or_without_world_json_stays(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert set_aside_other_world(out, tmp_path / "w") is None  # no folder yet
    _demo_on(out, tmp_path / "w")
    assert set_aside_other_world(out, tmp_path / "x" / ".." / "w") is None  # same folder, other spelling
    assert (out / "world.json").is_file()
    (out / "world.json").unlink()
    assert set_aside_other_world(out, tmp_path / "v") is None and out.is_dir()  # not a demo folder that names its world: left alone
