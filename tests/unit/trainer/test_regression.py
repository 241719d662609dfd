"""Frozen regression sets: versioned by content, read-only, checked before use."""

from __future__ import annotations

import os
import stat

import pytest

from misinfo.samples import scene
from trainer.regression import RegressionSetError, freeze, list_sets, load_sets


def _images(folder, n, start=0):  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        path = folder / f"{i}.png"
        scene(i, (48, 48)).save(path)
        out.append((path, ["authentic", "manipulated"][i % 2]))
    return out


def test_a_set_is_versioned_by_its_content_and_frozen_read_only(tmp_path):
    items = _images(tmp_path / "src", 6)
    first = freeze(tmp_path / "reg", "A", items)
    assert first.version.startswith("rs-") and first.counts == {"authentic": 3, "manipulated": 3}
    again = freeze(tmp_path / "reg", "A", list(reversed(items)))
    assert again.version == first.version and len(list_sets(tmp_path / "reg")) == 1  # same content
    files = [p for p in first.path.rglob("*") if p.is_file()]
    assert files and all(not (p.stat().st_mode & stat.S_IWUSR) for p in files)
    assert sorted(label for _, label in first.examples()) == sorted(label for _, label in items)

    relabeled = [(p, "synthesized" if i == 0 else lb) for i, (p, lb) in enumerate(items)]
    second = freeze(tmp_path / "reg", "A", relabeled)
    assert second.version != first.version and len(list_sets(tmp_path / "reg")) == 2
    assert [rs.version for rs in load_sets(tmp_path / "reg")] == [second.version]  # the newest per name
    freeze(tmp_path / "reg", "B", _images(tmp_path / "src", 4, start=10))
    assert sorted(rs.name for rs in load_sets(tmp_path / "reg")) == ["A", "B"]


def test_a_set_changed_after_freezing_is_refused(tmp_path):
    rs = freeze(tmp_path / "reg", "A", _images(tmp_path / "src", 4))
    victim = next((rs.path / "images").iterdir())
    os.chmod(victim, stat.S_IWUSR | stat.S_IRUSR)
    scene(99, (48, 48)).save(victim, "PNG")
    with pytest.raises(RegressionSetError, match="changed after it was frozen"):
        load_sets(tmp_path / "reg")


def test_bad_names_and_labels_are_refused(tmp_path):
    items = _images(tmp_path / "src", 2)
    with pytest.raises(RegressionSetError, match="name"):
        freeze(tmp_path / "reg", "../up", items)
    with pytest.raises(RegressionSetError, match="label"):
        freeze(tmp_path / "reg", "A", [(items[0][0], "fake")])
    with pytest.raises(RegressionSetError, match="no images"):
        freeze(tmp_path / "reg", "A", [])


def test_the_cli_freezes_and_lists(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from trainer.cli import train
    from trainer.data import conversation_record

    items = _images(tmp_path / "src", 4)
    records = tmp_path / "records.json"
    records.write_text(json.dumps([conversation_record(str(p), f"Verdict: {lb}") for p, lb in items]))
    monkeypatch.setenv("MISINFO_TRAIN_REGRESSION_DIR", str(tmp_path / "reg"))
    out = CliRunner().invoke(train, ["regression", "freeze", "A", str(records)])
    assert out.exit_code == 0, out.output
    version = json.loads(out.output)["version"]
    listed = CliRunner().invoke(train, ["regression", "list"])
    assert [json.loads(line)["version"] for line in listed.output.splitlines()] == [version]
    bad = CliRunner().invoke(train, ["regression", "freeze", "../x", str(records)])
    assert bad.exit_code == 1 and "regression set name" in bad.output
