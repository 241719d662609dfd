"""``misinfo demo``: the whole loop on one machine, with a detector that has learned something.

Builds (once, then cached in the state directory) a small detector: the tiny Qwen2.5-VL fully
fine-tuned on the project's generated forensic set (:mod:`misinfo.demo_model`); starts the broker
and Redis of the embedded stack (what is not already running); writes images it never trained on,
half authentic and half manipulated; runs the folder collector and a worker as real processes;
prints each verdict as it lands on the verdicts topic; ends with the flagged counts by true class;
then stops what it started. Each run uses its own topics and Redis prefix, so runs never see each
other's data.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from core.config import load_settings
from core.keys import Keys
from misinfo.procs import run_misinfo, start_misinfo

STACK = ["broker", "redis"]  # what the demo needs; `misinfo dev up` starts MLflow and Ray too


@click.command()
@click.option("--images", "n_images", default=40, show_default=True, help="unseen images (half manipulated)")
@click.option("--timeout", default=600.0, show_default=True, help="give up after this many seconds")
@click.option("--keep-stack", is_flag=True, help="leave the stack running afterwards")
def demo(n_images: int, timeout: float, keep_stack: bool) -> None:
    """Run collector -> broker -> worker -> Redis + verdicts topic on generated images, with the demo
    detector (MISINFO_MODEL_PATH, when set, instead); the last line counts flagged images by true class."""
    from core.contracts.verdicts import Verdict
    from core.kafka import replay_consumer
    from misinfo.demo_model import card, demo_detector, write_demo_images
    from misinfo.devstack import DevStack
    from stream_workers.cli import summary_line

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    base = load_settings()
    tag = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    settings = base.isolated(f"demo-{tag}")
    if settings.model_path:
        say(f"demo: using MISINFO_MODEL_PATH={settings.model_path} (not the demo detector)")
    else:
        model = demo_detector(settings.state_dir, say)
        threshold = card(model)["flag_threshold"]  # chosen on held-out generated images
        settings = dataclasses.replace(
            settings, model_path=str(model), model_version="demo", flag_threshold=threshold
        )
        say(f"demo detector: flags an image when P(manipulated) + P(synthesized) >= {threshold:.2f}")
    stack = DevStack(settings)
    already = {s.name for s in stack.status(STACK) if s.healthy}
    say(f"demo {tag}: starting the embedded stack's {' and '.join(STACK)} (state in {settings.state_dir})")
    stack.up(STACK, progress=lambda m: say("  " + m))
    settings = stack.settings  # with the ports it settled on (recorded in the state directory)
    started = [name for name in STACK if name not in already]
    worker = None
    try:
        folder = Path(settings.state_dir) / "demo" / tag / "images"
        truth = write_demo_images(folder, n_images)
        say(f"wrote {len(truth)} images it never trained on (half manipulated) to {folder}")

        log = Path(settings.state_dir) / "logs" / f"demo-worker-{tag}.log"
        worker = start_misinfo(settings, "worker", log=log)
        say(f"worker started (pid {worker.pid}, log {log})")

        collected = run_misinfo(settings, "collect", "folder", str(folder), "--once", timeout=timeout)
        if collected.returncode != 0:
            raise click.ClickException(f"collector failed:\n{collected.stderr[-2000:]}")
        counts = json.loads(collected.stdout.strip().splitlines()[-1])
        say(f"collector: {json.dumps(counts)}")

        consumer = replay_consumer(settings.kafka_bootstrap, settings.topic_verdicts, idle_s=1.0)
        verdicts: dict[str, Verdict] = {}
        deadline = time.monotonic() + timeout
        while len(verdicts) < counts["published"]:
            if time.monotonic() > deadline:
                raise click.ClickException(f"timed out; worker log: {log}")
            if worker.poll() is not None:
                raise click.ClickException(f"the worker exited ({worker.returncode}); log: {log}")
            for msg in consumer:
                v = Verdict.parse(msg.value)
                if v.image_id not in verdicts:
                    verdicts[v.image_id] = v
                    click.echo(f"[truly {truth.get(v.image_id, '?'):11}] {summary_line(v)}")
        consumer.close()
        say(
            f"records in Redis under {Keys(settings.redis_prefix).pattern('verdict')}, feed on topic {settings.topic_verdicts}"
        )
        summary = summary_line_of(counts["published"], verdicts, truth)
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
        if not keep_stack and started:
            say(f"stopping what the demo started: {', '.join(started)}")
            stack.down(started, progress=lambda m: say("  " + m))
    click.echo(summary)


def flagged_by_class(verdicts: Mapping[str, Any], truth: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """True class -> (flagged, judged)."""
    out: dict[str, tuple[int, int]] = {}
    for image_id, v in verdicts.items():
        cls = truth.get(image_id)
        if cls is None:
            continue
        flagged, judged = out.get(cls, (0, 0))
        out[cls] = (flagged + bool(getattr(v, "flagged", False)), judged + 1)
    return out


def summary_line_of(published: int, verdicts: Mapping[str, Any], truth: Mapping[str, str]) -> str:
    """``demo: 40 images, 40 verdicts, 17 flagged: manipulated 15/20 (75%), authentic 2/20 (10%)``."""
    by = flagged_by_class(verdicts, truth)
    flagged = sum(bool(getattr(v, "flagged", False)) for v in verdicts.values())
    parts = [
        f"{cls} {f}/{n} ({f / n:.0%})"
        for cls in ("manipulated", "authentic")
        if cls in by
        for f, n in [by[cls]]
    ]
    return f"demo: {published} images, {len(verdicts)} verdicts, {flagged} flagged: " + ", ".join(parts)
