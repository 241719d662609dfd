"""The dataset builder: moderators' labels (plus an optional seed set) → train/validation files in the
conversation JSON format and a versioned manifest.

- Labels come from Redis (``{p}:labels:{image_id}``: moderator_id -> Label JSON, written by the
  moderation service) or from a replay of the feedback topic; the image comes from the blob store,
  through the ``ImageEvent`` kept in the verdict record (``{p}:verdict:{image_id}``, field ``event``).
- Several moderators on one image: the majority label wins (ties: the most recent label); the
  answer's reasons are the winning moderators' latest note, else the detector's default reasons.
- Undo: a retraction (a ``Label`` with ``retracted_at``, published when a moderator undoes a label)
  removes the label it repeats; the moderator's previous label, if any, counts again. Redis holds
  the labels as they are after the undo already; a replay of the topic needs the retractions.
- Regions: the boxes the winning moderators drew (``Label.regions``, fractions of the image's width
  and height) go into each training record (``"regions"``) and the manifest's rows, each with the
  moderator who drew it; a dataset with regions includes them in its version digest.
- Near-duplicates (perceptual-hash Hamming distance within ``phash_distance``) form one group, and a
  group lies wholly in train or wholly in validation, so re-shares of one picture never leak across.
- Class balancing oversamples the training split up to the largest class (the re-share
  augmentations at training time make the copies differ); the validation split is left as it is.
- Replay (no forgetting by design): earlier training images, the champion's training split (read
  back through its manifest, whose rows keep each image's ``blob_uri`` or ``path``) and the seed set,
  are mixed in at ``MISINFO_TRAIN_REPLAY_RATIO`` replayed images per new label (1.0: as many old as
  new; fewer when fewer exist; every class of the pool in its own proportion). Replayed images go to
  the training split only, with their near-duplicate groups, so the held-out split measures the new
  labels alone; the frozen regression sets (:mod:`trainer.regression`) measure the old families.
- The manifest lists every record (image sha256, label, split, group, source) and its digest is the
  dataset version; :func:`log_manifest_input` logs it to MLflow as the run's input.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from core.agreement import pairwise_agreement
from core.kafka import replay_consumer
from core.keys import Keys
from detector.answer import CLASSES, format_answer
from ingest.dedup import hamming
from trainer.data import conversation_record, read_records

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = 1


@dataclass
class LabeledImage:
    """One labeled image before it is written out."""

    image_id: str
    label: str
    note: str = ""
    source: str = "labels"  # labels | seed | replay
    blob_uri: str | None = None
    path: str | None = None
    phash: str | None = None
    moderators: list[str] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)  # {x, y, w, h, moderator}

    def read_bytes(self) -> bytes:
        if self.path:
            return Path(self.path).read_bytes()
        if self.blob_uri:
            from ingest.blobs import read_blob

            return read_blob(self.blob_uri)
        raise ValueError(f"{self.image_id}: no image (neither path nor blob_uri)")


def live_labels(labels: Iterable[Any]) -> list[Any]:
    """The labels no retraction withdrew (the retractions themselves dropped too)."""
    labels = list(labels)
    withdrawn = {lb.identity() for lb in labels if getattr(lb, "retracted_at", None) is not None}
    return [
        lb for lb in labels if getattr(lb, "retracted_at", None) is None and lb.identity() not in withdrawn
    ]


@dataclass(frozen=True)
class Aggregate:
    """The training label of one image and where it came from."""

    label: str
    note: str
    moderators: list[str]
    regions: list[dict[str, Any]]  # the winning moderators' boxes, each with its moderator


def aggregate_labels(labels: Iterable[Any]) -> dict[str, tuple[str, str, list[str]]]:
    """image_id -> (label, note, moderators) from :class:`~core.contracts.verdicts.Label`s.

    The latest label of each moderator counts; the majority wins, ties go to the most recent.
    """
    return {k: (a.label, a.note, a.moderators) for k, a in aggregate(labels).items()}


def latest_per_image(labels: Iterable[Any]) -> dict[str, list[Any]]:
    """image_id -> each moderator's latest live label of it (retracted labels do not count)."""
    latest: dict[tuple[str, str], Any] = {}
    for lb in live_labels(labels):
        key = (lb.image_id, lb.moderator_id)
        if key not in latest or lb.labeled_at >= latest[key].labeled_at:
            latest[key] = lb
    per_image: dict[str, list[Any]] = defaultdict(list)
    for (image_id, _), lb in latest.items():
        per_image[image_id].append(lb)
    return per_image


def aggregate(labels: Iterable[Any]) -> dict[str, Aggregate]:
    """:func:`aggregate_labels` with the regions; retracted labels (undone) do not count."""
    per_image = latest_per_image(labels)
    out = {}
    for image_id, lbs in per_image.items():
        votes = Counter(lb.label for lb in lbs)
        newest = {c: max(lb.labeled_at for lb in lbs if lb.label == c) for c in votes}
        label = max(votes, key=lambda c: (votes[c], newest[c]))
        winners = sorted((lb for lb in lbs if lb.label == label), key=lambda lb: lb.labeled_at)
        notes = [lb.note for lb in winners if lb.note.strip()]
        regions = [
            {**r.model_dump(), "moderator": lb.moderator_id}
            for lb in winners
            for r in getattr(lb, "regions", [])
        ]
        out[image_id] = Aggregate(
            label, notes[-1] if notes else "", sorted(lb.moderator_id for lb in lbs), regions
        )
    return out


def _items_from_labels(redis: Any, prefix: str, labels: list[Any]) -> list[LabeledImage]:
    from core.contracts.images import ImageEvent

    items = []
    for image_id, agg in sorted(aggregate(labels).items()):
        raw = redis.hget(Keys(prefix).verdict(image_id), "event")
        if raw is None:
            log.warning("labeled image %s has no verdict record with its event; skipped", image_id)
            continue
        event = ImageEvent.parse(raw)
        items.append(
            LabeledImage(
                image_id,
                agg.label,
                agg.note,
                "labels",
                blob_uri=event.blob_uri,
                phash=event.phash,
                moderators=agg.moderators,
                regions=agg.regions,
            )
        )
    return items


def raw_labels_from_redis(redis: Any, prefix: str) -> list[Any]:
    """Every moderator's latest label in Redis under ``prefix`` (``Label`` objects)."""
    from core.contracts.verdicts import Label

    labels = []
    for key in redis.scan_iter(Keys(prefix).pattern("labels"), count=1000):
        for raw in redis.hgetall(key).values():
            labels.append(Label.parse(raw))
    return labels


def labels_from_redis(redis: Any, prefix: str) -> list[LabeledImage]:
    """Every labeled image in Redis under ``prefix``, with its blob reference."""
    return items_from_labels(redis, prefix, raw_labels_from_redis(redis, prefix))


def items_from_labels(redis: Any, prefix: str, labels: list[Any]) -> list[LabeledImage]:
    """Labeled images (majority label, blob reference from the verdict record) from ``Label``s."""
    return _items_from_labels(redis, prefix, labels)


def moderator_agreement(labels: Iterable[Any]) -> dict[str, Any]:
    """How often moderators agree where two or more labeled the same image (the review service's
    second-moderator share): :func:`core.agreement.pairwise_agreement` over each moderator's latest
    label. Retracted labels do not count."""
    return pairwise_agreement(
        [(lb.moderator_id, lb.label) for lb in lbs] for lbs in latest_per_image(labels).values()
    )


def labels_from_topic(
    bootstrap: str, topic: str, redis: Any, prefix: str, idle_s: float = 5.0
) -> list[LabeledImage]:
    """Rebuild the label set by replaying the feedback topic from its start (Kafka is the durable log)."""
    from core.contracts.base import ContractError
    from core.contracts.verdicts import Label

    consumer = replay_consumer(bootstrap, topic, idle_s=idle_s)
    labels = []
    try:
        for msg in consumer:
            try:
                labels.append(Label.parse(msg.value))
            except ContractError as exc:
                log.warning(
                    "skipping an invalid label at %s[%d]@%d: %s", topic, msg.partition, msg.offset, exc
                )
    finally:
        consumer.close()
    return _items_from_labels(redis, prefix, labels)


def replay_pool(manifest: dict[str, Any]) -> list[LabeledImage]:
    """The training split of an earlier dataset (a champion's manifest), as replayable items: rows
    whose image can still be read (a ``blob_uri`` or an existing ``path``); the others are skipped."""
    out = []
    skipped = 0
    for row in manifest.get("records", []):
        if row.get("split") != "train" or row.get("label") not in CLASSES:
            continue
        blob, path = row.get("blob_uri"), row.get("path")
        if not blob and not (path and Path(path).is_file()):
            skipped += 1
            continue
        out.append(
            LabeledImage(
                row["image_id"], row["label"], "", "replay", blob_uri=blob, path=path, phash=row.get("phash")
            )
        )
    if skipped:
        log.warning("replay: %d rows of %s have no readable image; skipped", skipped, manifest.get("version"))
    return out


def sample_replay(pool: list[LabeledImage], n: int, seed: int = 0) -> list[LabeledImage]:
    """``n`` items of ``pool`` (all when ``n`` is negative or exceeds it), each class in its share of
    the pool, chosen deterministically; marked as replayed."""
    unique = list({it.image_id: it for it in pool}.values())
    if n < 0 or n >= len(unique):
        chosen = unique
    else:
        rng = random.Random(seed)
        per: dict[str, list[LabeledImage]] = defaultdict(list)
        for it in sorted(unique, key=lambda it: it.image_id):
            per[it.label].append(it)
        chosen = []
        for label in sorted(per):
            take = round(n * len(per[label]) / len(unique))
            chosen += rng.sample(per[label], min(take, len(per[label])))
    return [
        LabeledImage(
            it.image_id,
            it.label,
            it.note,
            "replay",
            it.blob_uri,
            it.path,
            it.phash,
            it.moderators,
            it.regions,
        )
        for it in chosen
    ]


def seed_items(path: str | Path, image_root: str | Path | None = None) -> list[LabeledImage]:
    """Items from a seed data set in the conversation JSON format."""
    items = []
    for ex in read_records(path, image_root):
        digest = hashlib.sha256(ex.image.read_bytes()).hexdigest()
        reasons = ex.answer.split("Reasons:", 1)[1].strip() if "Reasons:" in ex.answer else ""
        items.append(LabeledImage(digest, ex.label, reasons, "seed", path=str(ex.image)))
    return items


# ------------------------------------------------------------------------------------- grouping


def phash_of(data: bytes) -> str:
    import imagehash

    with Image.open(io.BytesIO(data)) as im:
        return str(imagehash.phash(im.convert("RGB")))


def group_near_duplicates(phashes: list[str], distance: int) -> list[int]:
    """Union-find over pairs within ``distance``: index -> group id (the group's smallest index)."""
    parent = list(range(len(phashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if distance >= 0:
        for i in range(len(phashes)):
            for j in range(i + 1, len(phashes)):
                if hamming(phashes[i], phashes[j]) <= distance:
                    a, b = find(i), find(j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(phashes))]


def split_groups(labels: list[str], groups: list[int], val_fraction: float, seed: int) -> list[str]:
    """'train'/'val' per item; whole groups move, aiming at ``val_fraction`` of each class in val."""
    by_group: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    order = sorted(by_group, key=lambda g: hashlib.sha256(f"{seed}:{g}:{labels[g]}".encode()).hexdigest())
    totals = Counter(labels)
    want = {c: round(n * val_fraction) for c, n in totals.items()}
    if val_fraction > 0:
        for c, n in totals.items():  # every class with 2+ images gets at least one held-out example
            want[c] = max(want[c], 1 if n >= 2 else 0)
    have: Counter[str] = Counter()
    split = ["train"] * len(labels)
    for g in order:
        members = by_group[g]
        counts = Counter(labels[i] for i in members)
        if all(have[c] + k <= want[c] for c, k in counts.items()):
            for i in members:
                split[i] = "val"
            have.update(counts)
    return split


def balance(indices: list[int], labels: list[str], seed: int) -> list[int]:
    """Oversample each class of ``indices`` up to the largest one (deterministically)."""
    rng = random.Random(seed)
    per: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        per[labels[i]].append(i)
    if not per:
        return []
    top = max(len(v) for v in per.values())
    out = []
    for c in sorted(per):
        members = per[c]
        out += members + [rng.choice(members) for _ in range(top - len(members))]
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------------- the builder


def build_dataset(
    items: list[LabeledImage],
    out_dir: str | Path,
    *,
    val_fraction: float = 0.2,
    phash_distance: int = 4,
    seed: int = 0,
    balance_classes: bool = True,
    sources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``images/``, ``train.json``, ``val.json`` and ``manifest.json`` under ``out_dir``; return the manifest."""
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    seen: dict[str, LabeledImage] = {}
    for it in items:  # the same image twice (a seed image also labeled live): the live label wins
        if it.label not in CLASSES:
            raise ValueError(f"{it.image_id}: label {it.label!r} is not one of {CLASSES}")
        if it.image_id not in seen or it.source == "labels":
            seen[it.image_id] = it
    kept = list(seen.values())
    replayed = {i for i, it in enumerate(kept) if it.source == "replay"}
    files: list[str] = []
    hashes: list[str] = []
    for it in kept:
        data = it.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}.get(
                im.format or "", "img"
            )
        name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        (img_dir / name).write_bytes(data)
        files.append(f"images/{name}")
        hashes.append(it.phash or phash_of(data))
    labels = [it.label for it in kept]
    groups = group_near_duplicates(hashes, phash_distance)
    # Replayed images (and whatever shares their near-duplicate group) train only: the held-out split
    # is the new labels'.
    forced = {groups[i] for i in replayed}
    free = [i for i in range(len(kept)) if groups[i] not in forced]
    local = {g: k for k, g in enumerate(free)}  # a group's id is its smallest member's index
    free_split = split_groups([labels[i] for i in free], [local[groups[i]] for i in free], val_fraction, seed)
    split = ["train"] * len(kept)
    for i, s in zip(free, free_split, strict=True):
        split[i] = s
    train_idx = [i for i, s in enumerate(split) if s == "train"]
    val_idx = [i for i, s in enumerate(split) if s == "val"]
    train_order = balance(train_idx, labels, seed) if balance_classes else train_idx

    def record(i: int) -> dict[str, Any]:
        rec = conversation_record(files[i], format_answer(kept[i].label, kept[i].note), id=kept[i].image_id)
        if kept[i].regions:
            rec["regions"] = kept[i].regions
        return rec

    (out / "train.json").write_text(json.dumps([record(i) for i in train_order], indent=1))
    (out / "val.json").write_text(json.dumps([record(i) for i in val_idx], indent=1))
    rows: list[dict[str, Any]] = [
        {
            "image_id": it.image_id,
            "file": files[i],
            "label": it.label,
            "split": split[i],
            "group": groups[i],
            "phash": hashes[i],
            "source": it.source,
            "moderators": it.moderators,
            "regions": it.regions,
            # Where the image can be read again, so a later cycle can replay this one's training split.
            "blob_uri": it.blob_uri,
            "path": str(Path(it.path).resolve()) if it.path else None,
        }
        for i, it in enumerate(kept)
    ]
    params = {
        "val_fraction": val_fraction,
        "phash_distance": phash_distance,
        "seed": seed,
        "balance_classes": balance_classes,
    }
    # Regions join the digest only when there are some: datasets without any keep their versions.
    digest = hashlib.sha256(
        json.dumps(
            [
                [r["image_id"], r["label"], r["split"]] + ([r["regions"]] if r["regions"] else [])
                for r in sorted(rows, key=lambda r: r["image_id"])
            ]
            + [params]
        ).encode()
    ).hexdigest()
    manifest: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA,
        "version": f"ds-{digest[:12]}",
        "digest": digest,
        "created_at": datetime.now(UTC).isoformat(),
        "params": params,
        "sources": sources or {},
        "counts": {
            "images": len(kept),
            "groups": len(set(groups)),
            "train": dict(Counter(labels[i] for i in train_idx)),
            "train_balanced": dict(Counter(labels[i] for i in train_order)),
            "val": dict(Counter(labels[i] for i in val_idx)),
            "with_regions": sum(1 for it in kept if it.regions),
            "by_source": dict(Counter(it.source for it in kept)),
        },
        "files": {"train": "train.json", "val": "val.json"},
        "records": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info(
        "dataset %s: %d images in %d groups, train %s (balanced %s), val %s",
        manifest["version"],
        len(kept),
        manifest["counts"]["groups"],
        manifest["counts"]["train"],
        manifest["counts"]["train_balanced"],
        manifest["counts"]["val"],
    )
    return manifest


def log_manifest_input(manifest_path: str | Path, context: str = "training") -> None:
    """Log the manifest to the active MLflow run as its input dataset (and as an artifact)."""
    import mlflow
    import pandas as pd

    path = Path(manifest_path)
    manifest = json.loads(path.read_text())
    df = pd.DataFrame(
        [{k: r[k] for k in ("image_id", "label", "split", "group", "source")} for r in manifest["records"]]
    )
    dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
        df, source=str(path.resolve()), name=manifest["version"], targets="label"
    )
    mlflow.log_input(dataset, context=context, tags={"digest": manifest["digest"]})
    mlflow.log_artifact(str(path), "dataset")
    mlflow.set_tag("dataset.version", manifest["version"])
