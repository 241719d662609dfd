import json
from datetime import UTC, datetime, timedelta

from core.contracts.verdicts import Label
from misinfo.samples import scene
from trainer.data import conversation_record, read_records
from trainer.dataset import (
    LabeledImage,
    aggregate,
    aggregate_labels,
    balance,
    build_dataset,
    group_near_duplicates,
    seed_items,
    split_groups,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lab(image: str, label: str, mod: str, minutes: int, note: str = "") -> Label:
    return Label(
        image_id=image * 64,
        label=label,
        moderator_id=mod,
        verdict_model_version=None,
        note=note,
        labeled_at=T0 + timedelta(minutes=minutes),
    )


def test_majority_wins_then_the_latest_and_a_moderator_counts_once():
    out = aggregate_labels(
        [
            lab("a", "manipulated", "m1", 0, "edited sky"),
            lab("a", "manipulated", "m2", 1),
            lab("a", "authentic", "m3", 2),
            lab("b", "authentic", "m1", 0),
            lab("b", "synthesized", "m2", 5, "GAN hands"),
            lab("c", "authentic", "m1", 0),
            lab("c", "synthesized", "m1", 3),  # m1 changed their mind
        ]
    )
    assert out["a" * 64] == ("manipulated", "edited sky", ["m1", "m2", "m3"])
    assert out["b" * 64][:2] == ("synthesized", "GAN hands")
    assert out["c" * 64][0] == "synthesized"


def test_near_duplicates_never_straddle_the_split():
    hashes = ["0" * 16, "0" * 15 + "1", "f" * 16, "f" * 15 + "e", "00ff00ff00ff00ff", "ff00ff00ff00ff00"]
    groups = group_near_duplicates(hashes, distance=4)
    assert groups[0] == groups[1] and groups[2] == groups[3] and len(set(groups)) == 4
    labels = ["authentic", "authentic", "manipulated", "manipulated", "authentic", "manipulated"]
    for seed in range(20):
        split = split_groups(labels, groups, 0.5, seed)
        assert split[0] == split[1] and split[2] == split[3]
        assert "val" in split and "train" in split


def test_balance_oversamples_to_the_largest_class():
    labels = ["authentic"] * 6 + ["manipulated"] * 2
    out = balance(list(range(8)), labels, seed=0)
    assert sorted(labels[i] for i in out).count("manipulated") == 6 and len(out) == 12


def test_build_writes_splits_and_a_versioned_manifest(tmp_path):
    src = tmp_path / "seed"
    src.mkdir()
    recs = []
    for i in range(9):
        scene(i, (64, 64)).save(src / f"{i}.png")
        cls = ["authentic", "manipulated", "synthesized"][i % 3]
        recs.append(conversation_record(f"{i}.png", f"Verdict: {cls}\nReasons: seed {i}"))
    (src / "seed.json").write_text(json.dumps(recs))
    items = seed_items(src / "seed.json")
    extra = LabeledImage(
        items[0].image_id, "synthesized", "moderator overrides the seed", "labels", path=items[0].path
    )
    manifest = build_dataset([*items, extra], tmp_path / "ds", val_fraction=0.34, seed=3)
    assert manifest["counts"]["images"] == 9 and manifest["version"].startswith("ds-")
    train, val = read_records(tmp_path / "ds" / "train.json"), read_records(tmp_path / "ds" / "val.json")
    assert {e.image.name for e in train}.isdisjoint({e.image.name for e in val})
    assert sum(manifest["counts"]["val"].values()) == len(val) >= 3
    assert len(set(manifest["counts"]["train_balanced"].values())) == 1
    row = next(r for r in manifest["records"] if r["image_id"] == items[0].image_id)
    assert row["label"] == "synthesized" and row["source"] == "labels"
    again = build_dataset([*items, extra], tmp_path / "ds2", val_fraction=0.34, seed=3)
    assert again["version"] == manifest["version"]  # same data, same version


def test_an_undone_label_does_not_count_and_the_previous_one_comes_back():
    first = lab("d", "manipulated", "m1", 0, "spliced sky")
    second = lab("d", "authentic", "m1", 1)  # m1 changed their mind, then undid that
    other = lab("e", "synthesized", "m2", 0)
    out = aggregate_labels([first, second, second.retraction(), other, other.retraction()])
    assert out["d" * 64] == ("manipulated", "spliced sky", ["m1"])
    assert "e" * 64 not in out  # its only label was withdrawn
    # A retraction read before its label (a merged replay) withdraws it all the same.
    assert "e" * 64 not in aggregate_labels([other.retraction(), other])


def test_regions_of_the_winning_labels_go_into_the_records_and_the_manifest(tmp_path):
    box = {"x": 0.25, "y": 0.5, "w": 0.5, "h": 0.25}
    boxed = Label(
        image_id="f" * 64,
        label="manipulated",
        moderator_id="m1",
        verdict_model_version=None,
        regions=[box],
        labeled_at=T0,
    )
    losing = lab("f", "synthesized", "m2", 1).model_copy(update={"regions": []})
    agg = aggregate([boxed, lab("f", "manipulated", "m3", 2), losing])
    assert agg["f" * 64].regions == [{**box, "moderator": "m1"}]

    scene(1, (64, 64)).save(tmp_path / "a.png")
    scene(2, (64, 64)).save(tmp_path / "b.png")
    items = [
        LabeledImage("1" * 64, "manipulated", path=str(tmp_path / "a.png"), regions=agg["f" * 64].regions),
        LabeledImage("2" * 64, "authentic", path=str(tmp_path / "b.png")),
    ]
    manifest = build_dataset(items, tmp_path / "ds", val_fraction=0.0)
    rows = {r["image_id"]: r for r in manifest["records"]}
    assert rows["1" * 64]["regions"] == [{**box, "moderator": "m1"}] and rows["2" * 64]["regions"] == []
    assert manifest["counts"]["with_regions"] == 1
    train = json.loads((tmp_path / "ds" / "train.json").read_text())
    assert [r["regions"] for r in train if r["id"] == "1" * 64][0] == [{**box, "moderator": "m1"}]
    assert all("regions" not in r for r in train if r["id"] == "2" * 64)
    assert len(read_records(tmp_path / "ds" / "train.json")) == len(train)  # the trainer still reads them
    moved = [LabeledImage(**{**vars(items[0]), "regions": [{**box, "x": 0.0, "moderator": "m1"}]}), items[1]]
    assert build_dataset(moved, tmp_path / "ds2", val_fraction=0.0)["version"] != manifest["version"]
    plain = [LabeledImage(**{**vars(items[0]), "regions": []}), items[1]]
    unboxed = build_dataset(plain, tmp_path / "ds3", val_fraction=0.0)
    assert unboxed["version"] != manifest["version"]


def test_replayed_images_train_only_in_their_classes_share_and_the_manifest_keeps_them_readable(tmp_path):
    from trainer.dataset import replay_pool, sample_replay

    src = tmp_path / "old"
    src.mkdir()
    old = []
    for i in range(12):
        scene(100 + i, (64, 64)).save(src / f"{i}.png")
        old.append(
            LabeledImage(f"{i:064x}", "authentic" if i < 8 else "manipulated", path=str(src / f"{i}.png"))
        )
    champion = build_dataset(old, tmp_path / "champ", val_fraction=0.25, seed=1)
    pool = replay_pool(champion)
    assert {it.source for it in pool} == {"replay"}
    assert len(pool) == sum(1 for r in champion["records"] if r["split"] == "train")  # its val stays out
    picked = sample_replay(pool, 6, seed=0)
    counts = {lb: sum(1 for it in picked if it.label == lb) for lb in ("authentic", "manipulated")}
    share = sum(1 for it in pool if it.label == "authentic") / len(pool)
    assert abs(counts["authentic"] / len(picked) - share) < 0.2 and len(picked) in (5, 6, 7)
    assert sample_replay(pool, 6, seed=0) == picked and len(sample_replay(pool, -1)) == len(pool)

    new = []
    for i in range(6):
        scene(200 + i, (64, 64)).save(src / f"n{i}.png")
        new.append(LabeledImage(f"{200 + i:064x}", "synthesized", path=str(src / f"n{i}.png")))
    manifest = build_dataset(new + picked, tmp_path / "ds", val_fraction=0.5, seed=2)
    rows = manifest["records"]
    assert all(r["split"] == "train" for r in rows if r["source"] == "replay")
    assert {r["label"] for r in rows if r["split"] == "val"} == {"synthesized"}
    assert manifest["counts"]["by_source"] == {"labels": 6, "replay": len(picked)}
    assert all(r["path"] for r in rows)  # a later cycle can read them again


def test_moderator_agreement_counts_pairs_on_double_labeled_images_per_moderator():
    from trainer.dataset import moderator_agreement

    out = moderator_agreement(
        [
            lab("a", "manipulated", "m1", 0),
            lab("a", "manipulated", "m2", 1),
            lab("b", "authentic", "m1", 0),
            lab("b", "synthesized", "m3", 1),
            lab("c", "authentic", "m1", 0),  # one moderator only: no pair
            lab("d", "authentic", "m2", 0),
            lab("d", "manipulated", "m2", 2),  # m2 changed their mind: one label
        ]
    )
    assert (out["images"], out["pairs"], out["agreeing_pairs"], out["rate"]) == (2, 2, 1, 0.5)
    assert out["per_moderator"]["m1"] == {"pairs": 2, "agreeing": 1, "rate": 0.5}
    assert out["per_moderator"]["m3"]["rate"] == 0.0
    assert moderator_agreement([lab("e", "authentic", "m1", 0)])["rate"] is None
