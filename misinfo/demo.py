"""``misinfo demo``: the whole loop on one machine, on the embedded defaults.

Starts the embedded stack (what is not already running), builds a tiny checkpoint when no model is
configured, writes a handful of generated sample images, runs the folder collector and a worker as
real processes, prints each verdict as it lands on the verdicts topic, then stops what it started.
Each run uses its own topics and Redis prefix, so runs never see each other's data.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import click

from core.config import load_settings
from core.keys import Keys
from misinfo.procs import run_misinfo, start_misinfo


@click.command()
@click.option("--images", "n_images", default=8, show_default=True, help="sample images to generate")
@click.option("--timeout", default=600.0, show_default=True, help="give up after this many seconds")
@click.option("--keep-stack", is_flag=True, help="leave the stack running afterwards")
def demo(n_images: int, timeout: float, keep_stack: bool) -> None:
    """Run collector → broker → worker → Redis + verdicts topic on generated images."""
    from core.contracts.verdicts import Verdict
    from core.kafka import replay_consumer
    from detector.loading import ensure_model
    from misinfo.devstack import DevStack
    from misinfo.samples import write_samples

    def say(msg: str) -> None:
        click.echo(msg, err=True)

    base = load_settings()
    tag = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    settings = base.isolated(f"demo-{tag}")
    stack = DevStack(settings)
    already = {s.name for s in stack.status() if s.healthy}
    say(f"demo {tag}: starting the embedded stack (state in {settings.state_dir})")
    stack.up(progress=lambda m: say("  " + m))
    settings = stack.settings  # the ports it settled on (recorded in the state directory)
    started = [c.name for c in stack.components if c.name not in already]
    worker = None
    try:
        model = ensure_model(settings)
        settings = dataclasses.replace(settings, model_path=model)
        folder = Path(settings.state_dir) / "demo" / tag / "images"
        paths = write_samples(folder, n=n_images, seed=int(uuid.uuid4().int % 1000))
        say(f"wrote {len(paths)} sample images to {folder}")

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
                    fake = v.scores.get("manipulated", 0) + v.scores.get("synthesized", 0)
                    click.echo(
                        f"verdict {v.image_id[:12]} {v.label:11} P(fake)={fake:.2f} "
                        f"{'FLAGGED' if v.flagged else 'ok':7} model={v.model_name}@{v.model_version} "
                        f"{v.latency_ms:.0f} ms"
                    )
        consumer.close()
        flagged = sum(v.flagged for v in verdicts.values())
        say(
            f"records in Redis under {Keys(settings.redis_prefix).pattern('verdict')}, feed on topic {settings.topic_verdicts}"
        )
        summary = f"demo: {counts['published']} images, {len(verdicts)} verdicts, {flagged} flagged"
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
