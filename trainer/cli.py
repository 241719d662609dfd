"""``misinfo train watch|run|cycle|submit|status|logs|stop|config|regression``: the retrain watcher, training by
hand and through Ray."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import click


@click.group()
def train() -> None:
    """Fine-tune the detector on moderators' labels (locally, or as a Ray job)."""


@train.command()
def watch() -> None:
    """Run the retrain watcher: count moderators' labels from the feedback topic and submit a training
    to Ray when the trigger policy says so (MISINFO_TRAIN_MIN_NEW_LABELS, ..._DISAGREEMENT_*, ..._COOLDOWN_S)."""
    from core.config import load_settings
    from core.reach import require_port, wait_until_reachable
    from trainer.watcher import run_watcher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    require_port(
        "the retrain watcher's metrics server",
        settings.watcher_web_bind,
        settings.watcher_web_port,
        "MISINFO_WATCHER_WEB_PORT",
    )
    wait_until_reachable(
        settings, ("broker", "redis"), who="retrain watcher", say=lambda m: click.echo(m, err=True)
    )
    click.echo(
        f"retrain watcher: labels from {settings.topic_feedback} at {settings.kafka_bootstrap}, "
        f"trainings to Ray at {settings.ray_address}",
        err=True,
    )
    run_watcher(settings)


@train.command()
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None, help="YAML config"
)
@click.option(
    "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="override a config value"
)
def run(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Train once as the config says (HF Trainer + PEFT LoRA or full, DeepSpeed, MLflow).

    Start it under `torchrun --nproc_per_node N -m trainer.cli run ...` (or `deepspeed`) for N GPUs.
    Prints progress and, last, one JSON line with the result.
    """
    from core.config import load_settings
    from trainer.config import ConfigError, load_config
    from trainer.train import run_training

    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = load_settings()
    result = run_training(
        cfg,
        tracking_uri=cfg.tracking.mlflow_uri or settings.mlflow_tracking_uri,
        base_model=settings.model_path,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(result))


@train.command()
def config() -> None:
    """Print every config key with its default and help text (a YAML you can start from)."""
    from trainer.config import describe

    click.echo(describe())


@train.command()
@click.option(
    "--request-json", default=None, help="the training request (default: $MISINFO_TRAINING_REQUEST)"
)
def cycle(request_json: str | None) -> None:
    """Run one whole cycle (what the Ray job runs): dataset, training, evaluation, registry, gate."""
    from core.config import load_settings
    from core.contracts.training import TrainingRequest
    from trainer.cycle import run_cycle
    from trainer.submit import REQUEST_ENV

    raw = request_json or os.environ.get(REQUEST_ENV)
    settings = load_settings()
    if raw:
        request = TrainingRequest.from_json(raw)
    else:
        request = _manual_request(settings, "cycle run by hand")
    result = run_cycle(settings, request, progress=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(result, default=str))


def _manual_request(settings, reason: str):  # type: ignore[no-untyped-def]
    import redis

    from core.contracts.training import TrainingRequest
    from trainer.trigger import TriggerState

    counters = TriggerState(redis.Redis.from_url(settings.redis_url), settings.redis_prefix).counters()
    return TrainingRequest(
        model_name=settings.model_name,
        redis_prefix=settings.redis_prefix,
        labels_total=counters.labels_total,
        reason=reason,
        requested_by="cli",
    )


@train.command()
@click.option("--wait", is_flag=True, help="follow the job's logs until it ends; exit 1 unless it succeeded")
@click.option("--timeout", default=7200.0, show_default=True, help="seconds to wait with --wait")
@click.option("--gpus", type=int, default=None, help="GPUs for the job (default: MISINFO_TRAIN_GPUS)")
@click.option("--reason", default="submitted by hand", show_default=True)
def submit(wait: bool, timeout: float, gpus: int | None, reason: str) -> None:
    """Submit a training cycle to Ray (MISINFO_RAY_ADDRESS); the same labels give the same job id."""
    from core.config import load_settings
    from core.reach import require
    from trainer.submit import RaySubmitter

    settings = load_settings()
    require(settings, "redis", "ray")
    request = _manual_request(settings, reason)
    sub = RaySubmitter(settings, gpus=gpus)
    sid = sub.submit(request)
    click.echo(f"submission {sid}", err=True)
    status = sub.status(sid)
    if wait:
        status = sub.wait(sid, timeout, progress=lambda text: click.echo(text, nl=False, err=True))
    click.echo(json.dumps({"submission_id": sid, "status": status, "request_id": request.request_id}))
    if wait and status != "SUCCEEDED":
        sys.exit(1)


def _submitter(settings):  # type: ignore[no-untyped-def]
    """A Ray Jobs client, after checking (within seconds) that the cluster answers."""
    from core.reach import require
    from trainer.submit import RaySubmitter

    require(settings, "ray")
    return RaySubmitter(settings)


def _known_job(sub, submission_id: str) -> str:  # type: ignore[no-untyped-def]
    """The job's status; an unknown id is a one-line error with exit status 1."""
    status = str(sub.status(submission_id))
    if status == "NOT_FOUND":
        click.echo(
            f"misinfo train: no training job {submission_id!r} on the Ray cluster at {sub.address} "
            "(`misinfo train status` lists the recent cycles and their ids)",
            err=True,
        )
        sys.exit(1)
    return status


@train.command()
@click.argument("submission_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of lines")
@click.option("--cycles", "n_cycles", default=5, show_default=True, help="how many recent cycles to list")
def status(submission_id: str | None, as_json: bool, n_cycles: int) -> None:
    """The retraining state, or with SUBMISSION_ID one Ray job's status.

    Without an id: whether the retrain watcher is counting labels, the labels since the last
    training against MISINFO_TRAIN_MIN_NEW_LABELS, the disagreement share against its threshold,
    the cooldown left, a training in flight, the last cycles with their outcome, and the gate's
    last decision (one line saying so when MLflow does not answer). An unknown id exits 1.
    """
    from core.config import load_settings

    settings = load_settings()
    if submission_id is not None:
        click.echo(_known_job(_submitter(settings), submission_id))
        return
    import redis

    from core.reach import http_answers, require
    from core.retraining import TriggerPolicy, read_status
    from registry.gate import last_decision_line

    require(settings, "redis")
    state = read_status(
        redis.Redis.from_url(settings.redis_url), settings.redis_prefix, TriggerPolicy.from_settings(settings)
    )
    flight = state.counters.in_flight
    job = None
    if flight and http_answers(settings.ray_address.rstrip("/") + "/api/version"):
        from trainer.submit import RaySubmitter

        job = str(RaySubmitter(settings).status(flight))
    recent = state.cycles()[-n_cycles:] if n_cycles > 0 else []
    gate = last_decision_line(settings.mlflow_tracking_uri, settings.model_name)
    if as_json:
        from core.retraining import outcome_counts

        doc = {
            "labels_total": state.counters.labels_total,
            "labels_per_class": state.per_class,
            "new_labels": state.counters.new_labels,
            "min_new_labels": state.policy.min_new_labels,
            "disagreement": state.disagreement,
            "disagreement_threshold": state.policy.disagreement_threshold,
            "disagreement_window": state.policy.disagreement_window,
            "progress": state.progress,
            "cooldown_left_s": state.cooldown_left_s,
            "in_flight": flight,
            "in_flight_status": job,
            "watcher": state.watcher,
            "cycles": [{**c.__dict__, "outcome": c.outcome} for c in recent],
            "outcomes": outcome_counts(state.cycles()),
            "gate": gate,
        }
        click.echo(json.dumps(doc, default=str))
        return
    for line in state.lines():
        click.echo(line + (f" ({job} on Ray)" if job and line.startswith("in flight:") else ""))
    if not recent:
        click.echo("last cycles: none yet")
    else:
        click.echo(f"last cycles ({len(recent)} of {len(state.cycles())}, newest first):")
        for c in reversed(recent):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.submitted_at)) if c.submitted_at else "-"
            version = f" version {c.version}" if c.version else ""
            click.echo(f"  {when} {c.submission_id} {c.outcome}{version}: {c.reason}")
    click.echo(gate)


@train.command()
@click.argument("submission_id")
def logs(submission_id: str) -> None:
    """A job's logs."""
    from core.config import load_settings

    sub = _submitter(load_settings())
    _known_job(sub, submission_id)
    click.echo(sub.logs(submission_id))


@train.command()
@click.argument("submission_id")
def stop(submission_id: str) -> None:
    """Stop a job."""
    from core.config import load_settings

    sub = _submitter(load_settings())
    _known_job(sub, submission_id)
    click.echo("stopped" if sub.stop(submission_id) else "not running")


@train.group()
def regression() -> None:
    """Frozen regression sets, one per family (MISINFO_TRAIN_REGRESSION_DIR): the gate refuses a
    candidate that loses a class's recall on any of them."""


def _regression_dir() -> str:
    from pathlib import Path

    from core.config import load_settings

    settings = load_settings()
    return settings.train_regression_dir or str(Path(settings.state_dir) / "regression")


@regression.command("freeze")
@click.argument("name")
@click.argument("records", type=click.Path(exists=True, dir_okay=False))
def regression_freeze(name: str, records: str) -> None:
    """Freeze the images and labels of RECORDS (conversation JSON) as regression set NAME; prints
    its version (the same images and labels always give the same version)."""
    from trainer.data import read_records
    from trainer.regression import RegressionSetError, freeze

    try:
        rs = freeze(_regression_dir(), name, [(ex.image, ex.label) for ex in read_records(records)])
    except (RegressionSetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(rs.to_dict()))


@regression.command("list")
def regression_list() -> None:
    """Every frozen version, one JSON object a line (the cycle uses the newest of each name)."""
    from trainer.regression import list_sets

    for rs in list_sets(_regression_dir()):
        click.echo(json.dumps(rs.to_dict()))


if __name__ == "__main__":  # the Ray job and torchrun start it as `python -m trainer.cli`
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "urllib3", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    train(prog_name="python -m trainer.cli")
