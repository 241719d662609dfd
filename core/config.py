"""Deployment settings, read from ``MISINFO_*`` environment variables once, at each entry point.

Everything below the entry points takes explicit arguments; only CLI modules call :func:`load_settings`.
The same variables serve the embedded stack and the production compose file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from core.keys import Keys
from core.ports import stack_ports

PREFIX = "MISINFO_"


class SecretStr(str):
    """A string whose repr and str never show the value; call :meth:`reveal` to use it."""

    def __new__(cls, value: str) -> SecretStr:
        obj = super().__new__(cls, "**********" if value else "")
        obj._value = value  # type: ignore[attr-defined]
        return obj

    def reveal(self) -> str:
        return self._value  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return "SecretStr('**********')" if self._value else "SecretStr('')"  # type: ignore[attr-defined]


def _state_dir_default() -> str:
    return str(Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "misinfo")


@dataclass(frozen=True)
class Settings:
    """Every setting, with its environment variable ``MISINFO_<NAME>`` (upper case)."""

    state_dir: str = field(default_factory=_state_dir_default, metadata={"help": "pid, log and data files"})
    # '' / 0: the embedded stack's own port for this state_dir (core/ports.py), so two stacks on one
    # machine never share a broker; compose, the chart and the tests name their services explicitly.
    kafka_bootstrap: str = field(
        default="", metadata={"help": "Kafka bootstrap servers ('' = the embedded stack's, per state_dir)"}
    )
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata={"help": "Redis URL"})
    mlflow_tracking_uri: str = field(
        default="", metadata={"help": "MLflow server ('' = the embedded stack's, per state_dir)"}
    )
    ray_address: str = field(
        default="",
        metadata={"help": "Ray Jobs API (dashboard) URL ('' = the embedded stack's, per state_dir)"},
    )
    ray_gcs_port: int = field(
        default=0, metadata={"help": "embedded Ray head's GCS port (0 = derived from state_dir)"}
    )
    blob_uri: str = field(
        default="", metadata={"help": "blob store root (file:// or s3://); '' = state_dir/blobs"}
    )
    topic_images: str = field(default="misinfo.images", metadata={"help": "image events topic"})
    topic_verdicts: str = field(default="misinfo.verdicts", metadata={"help": "verdicts topic"})
    topic_feedback: str = field(default="misinfo.feedback", metadata={"help": "moderator labels topic"})
    topic_dead_letters: str = field(default="misinfo.dead-letters", metadata={"help": "dead-letter topic"})
    topic_control: str = field(default="misinfo.control", metadata={"help": "model update topic"})
    topic_partitions: int = field(default=4, metadata={"help": "partitions when topics are created"})
    redis_prefix: str = field(default="misinfo", metadata={"help": "key prefix in Redis"})
    model_path: str = field(default="", metadata={"help": "local checkpoint or hub id; '' = tiny checkpoint"})
    model_name: str = field(default="misinfo-detector", metadata={"help": "registered model name"})
    model_version: str = field(default="0", metadata={"help": "version reported when not from the registry"})
    adapter_path: str = field(default="", metadata={"help": "optional PEFT LoRA adapter directory"})
    profile_path: str = field(default="", metadata={"help": "optional optimization profile JSON"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N"})
    verdict_side: int = field(
        default=448,
        metadata={
            "help": "images are resized to side x side px for a verdict (uniform batches), capped by the "
            "checkpoint's processor bounds (tiny: 112); 0 = the processor's own resize"
        },
    )
    verdict_keep_aspect: bool = field(
        default=False,
        metadata={"help": "keep aspect ratio: about side^2 px in a few shapes; batches are scored by shape"},
    )
    vision_attention: str = field(
        default="auto",
        metadata={
            "help": "vision tower attention: auto (varlen on a GPU, else batched), varlen, batched, stock"
        },
    )
    compile_blocks: str = field(
        default="auto",
        metadata={"help": "torch.compile vision blocks and decoder layers: auto (GPU), on, off"},
    )
    preprocess_on_device: bool = field(
        default=False, metadata={"help": "run the image processor on the model's GPU (torchvision backend)"}
    )
    # --- continuous training: retrain trigger, the Ray job, the evaluation gate (trainer/, registry/) ---
    train_trigger: bool = field(default=True, metadata={"help": "the retrain watcher submits trainings"})
    watcher_group: str = field(
        default="misinfo-retrain-watcher",
        metadata={"help": "retrain watcher's consumer group / Faust app id"},
    )
    train_min_new_labels: int = field(default=50, metadata={"help": "new labels that start a training"})
    train_disagreement_threshold: float = field(
        default=0.3, metadata={"help": "moderator-model disagreement share that starts a training"}
    )
    train_disagreement_window: int = field(default=100, metadata={"help": "last M labels for disagreement"})
    train_cooldown_s: float = field(default=3600.0, metadata={"help": "least time between training starts"})
    train_config: str = field(default="", metadata={"help": "training config YAML ('' = defaults)"})
    train_overrides: str = field(
        default="", metadata={"help": "training config overrides, section.key=value separated by ';'"}
    )
    train_seed_data: str = field(default="", metadata={"help": "seed data set (conversation JSON) to add"})
    train_val_fraction: float = field(default=0.2, metadata={"help": "held-out share of labeled images"})
    train_replay_ratio: float = field(
        default=1.0,
        metadata={
            "help": "earlier training images (the champion's training split, the seed set) replayed per "
            "new label; 0 = new labels only, -1 = all of them"
        },
    )
    train_regression_dir: str = field(
        default="",
        metadata={"help": "frozen regression sets, one folder per family ('' = state_dir/regression)"},
    )
    train_freeze_regression: bool = field(
        default=True,
        metadata={"help": "after a promotion, freeze the new labels' held-out split as a regression set"},
    )
    train_work_dir: str = field(
        default="", metadata={"help": "training jobs' files ('' = state_dir/training)"}
    )
    train_python: str = field(default="", metadata={"help": "interpreter on the Ray cluster ('' = this one)"})
    train_gpus: int = field(
        default=-1, metadata={"help": "GPUs per training job (-1 = 1 if the cluster has any)"}
    )
    train_runtime_env: str = field(default="", metadata={"help": "extra Ray runtime_env as JSON"})
    train_optimize: str = field(default="full", metadata={"help": "profile each candidate: full, quick, off"})
    train_auto_promote: bool = field(
        default=True, metadata={"help": "promote a candidate that passes the gate"}
    )
    gate_min_improvement: float = field(default=0.01, metadata={"help": "macro-F1 gain over the champion"})
    gate_max_recall_drop: float = field(default=0.05, metadata={"help": "largest per-class recall drop"})
    gate_min_macro_f1: float = field(default=0.5, metadata={"help": "absolute macro-F1 floor"})
    gate_min_label_agreement: float = field(
        default=0.7,
        metadata={"help": "least share of the held-out new labels the candidate must agree with (0 = off)"},
    )
    gate_min_moderator_agreement: float = field(
        default=0.7,
        metadata={"help": "least agreement between moderators on double-labeled images (0 = off)"},
    )
    gate_min_double_labeled: int = field(
        default=10, metadata={"help": "double-labeled images needed before moderator agreement is judged"}
    )
    worker_group: str = field(
        default="misinfo-workers", metadata={"help": "worker consumer group / Faust app id"}
    )
    rebalance_timeout_s: float = field(
        default=6.0, metadata={"help": "consumer-group rebalance timeout (a first join waits this long)"}
    )
    session_timeout_s: float = field(default=10.0, metadata={"help": "consumer-group session timeout"})
    watcher_web_port: int = field(default=6067, metadata={"help": "retrain watcher's /metrics port"})
    watcher_web_bind: str = field(
        default="127.0.0.1",
        metadata={
            "help": "address the retrain watcher's /metrics binds (0.0.0.0 where a scraper or probe calls in)"
        },
    )
    worker_web_port: int = field(default=6066, metadata={"help": "worker web server (metrics) port"})
    worker_web_bind: str = field(
        default="127.0.0.1",
        metadata={
            "help": "address the worker's web server (/metrics) binds (0.0.0.0 where a scraper or probe calls in)"
        },
    )
    max_batch: int = field(default=8, metadata={"help": "largest detection batch"})
    worker_pipeline_depth: int = field(
        default=3, metadata={"help": "batches in flight at once (prepare | model | write), acked in order"}
    )
    worker_stop_grace_s: float = field(
        default=30.0, metadata={"help": "on stop, how long to let batches in flight finish"}
    )
    max_wait_s: float = field(default=0.5, metadata={"help": "longest wait to fill a batch"})
    uncertain_below: float = field(
        default=0.5, metadata={"help": "top-class probability under which: uncertain"}
    )
    flag_threshold: float = field(default=0.5, metadata={"help": "P(manipulated)+P(synthesized) that flags"})
    explain: str = field(default="none", metadata={"help": "explanations: flagged, none, on_demand"})
    explain_max_tokens: int = field(default=64, metadata={"help": "cap on explanation tokens"})
    max_download_bytes: int = field(default=20 * 1024 * 1024, metadata={"help": "largest image download"})
    max_image_pixels: int = field(default=50_000_000, metadata={"help": "decompression-bomb bound"})
    # --- provenance read at ingest (ingest/provenance/) and the worker's stability re-check ---
    c2pa_trust_anchors: str = field(
        default="",
        metadata={
            "help": "PEM file (or PEM text) of the root certificates trusted to sign C2PA manifests; "
            "'' = signer trust is not judged (manifests are still validated)"
        },
    )
    c2pa_max_manifest_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata={"help": "a larger embedded C2PA manifest store is not parsed (recorded unreadable)"},
    )
    recheck_jpeg_quality: int = field(
        default=0,
        metadata={
            "help": "judge each image again after one JPEG re-encode at this quality, in the same batch, "
            "and mark the verdict unstable when the label changes (0 = off; doubles the model's work)"
        },
    )
    reddit_client_secret: SecretStr = field(default=SecretStr(""), metadata={"help": "Reddit app secret"})
    x_bearer_token: SecretStr = field(default=SecretStr(""), metadata={"help": "X API bearer token"})
    instagram_access_token: SecretStr = field(default=SecretStr(""), metadata={"help": "Instagram token"})
    # --- ingest: collectors' targets and endpoints (CLI arguments override the lists) ---
    reddit_client_id: str = field(default="", metadata={"help": "Reddit app client id"})
    reddit_user_agent: str = field(
        default="misinfo-watch/0.1 (image collector)", metadata={"help": "Reddit API user agent"}
    )
    reddit_subreddits: str = field(default="", metadata={"help": "comma-separated subreddits to watch"})
    reddit_sort: str = field(default="new", metadata={"help": "Reddit listing: new, hot or rising"})
    reddit_oauth_url: str = field(default="https://oauth.reddit.com", metadata={"help": "Reddit API URL"})
    reddit_url: str = field(default="https://www.reddit.com", metadata={"help": "Reddit token URL"})
    x_api_url: str = field(default="https://api.x.com", metadata={"help": "X API v2 base URL"})
    x_queries: str = field(default="", metadata={"help": "X recent-search queries, separated by ';'"})
    x_users: str = field(default="", metadata={"help": "comma-separated X usernames (timelines)"})
    instagram_graph_url: str = field(
        default="https://graph.facebook.com", metadata={"help": "Instagram Graph API base URL"}
    )
    instagram_api_version: str = field(default="v21.0", metadata={"help": "Graph API version"})
    instagram_user_id: str = field(default="", metadata={"help": "IG business account id making the calls"})
    instagram_hashtags: str = field(default="", metadata={"help": "comma-separated hashtags (recent media)"})
    instagram_accounts: str = field(
        default="", metadata={"help": "comma-separated IG business account ids whose media to read"}
    )
    rss_feeds: str = field(default="", metadata={"help": "comma-separated RSS/Atom feed URLs"})
    web_pages: str = field(default="", metadata={"help": "comma-separated web page URLs to watch"})
    fetch_allow: str = field(
        default="",
        metadata={"help": "private networks the fetcher may reach: CIDR or IP[:port], comma-separated"},
    )
    fetch_connect_timeout_s: float = field(default=5.0, metadata={"help": "fetch connect timeout"})
    fetch_read_timeout_s: float = field(default=15.0, metadata={"help": "fetch timeout per socket read"})
    fetch_total_timeout_s: float = field(default=60.0, metadata={"help": "fetch deadline per URL"})
    fetch_max_redirects: int = field(default=5, metadata={"help": "redirects followed per URL"})
    near_duplicate_distance: int = field(
        default=4, metadata={"help": "phash Hamming distance that links near-duplicates (-1 = off)"}
    )
    collect_backoff_max_s: float = field(default=300.0, metadata={"help": "longest collector backoff"})
    # --- the review service (moderation/): request limits, proxy trust, login throttling ---
    review_second_share: float = field(
        default=0.0,
        metadata={
            "help": "share of queued items a second moderator labels too (0..1; their agreement is on "
            "the stats page and the gate reads it)"
        },
    )
    moderation_max_body_bytes: int = field(
        default=64 * 1024,
        metadata={
            "help": "largest request body of the review service outside uploads (JSON, forms, login); "
            "an upload may carry MAX_DOWNLOAD_BYTES plus 64 KiB of form fields"
        },
    )
    moderation_forwarded_allow_ips: str = field(
        default="",
        metadata={
            "help": "proxies whose X-Forwarded-For/-Proto the review service believes: comma-separated "
            "IPs or CIDRs; '' = none, loopback included"
        },
    )
    login_backoff_after: int = field(
        default=5, metadata={"help": "failed logins for one user name from one address before backoff"}
    )
    login_backoff_after_address: int = field(
        default=30, metadata={"help": "failed logins from one address (any user names) before backoff"}
    )
    login_backoff_max_s: float = field(
        default=900.0, metadata={"help": "longest login backoff (1 s, doubling with each further failure)"}
    )

    def __post_init__(self) -> None:
        # Unset stack addresses become this state directory's own (recorded by `misinfo dev up`, or
        # derived from the path), so every command of one user finds the same private stack.
        if self.kafka_bootstrap and self.mlflow_tracking_uri and self.ray_address and self.ray_gcs_port:
            return
        ports = stack_ports(self.state_dir)
        for name, value in (
            ("kafka_bootstrap", f"127.0.0.1:{ports.broker}"),
            ("mlflow_tracking_uri", f"http://127.0.0.1:{ports.mlflow}"),
            ("ray_address", f"http://127.0.0.1:{ports.ray_dashboard}"),
            ("ray_gcs_port", ports.ray_gcs),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, value)

    @property
    def blob_root(self) -> str:
        return self.blob_uri or str(Path(self.state_dir) / "blobs")

    def isolated(self, name: str, **changes: Any) -> Settings:
        """The same deployment with topics, consumer group and Redis prefix of its own (``<name>.images``,
        group ``<name>``, keys under ``<redis_prefix>:<name>``): the demo, benchmarks and tests use it so
        runs never see each other's data."""
        return replace(
            self,
            topic_images=f"{name}.images",
            topic_verdicts=f"{name}.verdicts",
            topic_feedback=f"{name}.feedback",
            topic_dead_letters=f"{name}.dead-letters",
            topic_control=f"{name}.control",
            redis_prefix=Keys(self.redis_prefix).scoped(name),
            worker_group=name,
            **changes,
        )

    def env(self) -> dict[str, str]:
        """The settings as environment variables, secrets revealed: for child processes only, never logs."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[PREFIX + f.name.upper()] = value.reveal() if isinstance(value, SecretStr) else str(value)
        return out


def env_names() -> list[str]:
    """Every environment variable the settings read (compose checks compare against this list)."""
    return [PREFIX + f.name.upper() for f in fields(Settings)]


class SettingError(ValueError):
    """A ``MISINFO_*`` variable whose value cannot be read; the message names it and what it expects."""


def _coerce(raw: str, current: Any, name: str) -> Any:
    try:
        if isinstance(current, SecretStr):
            return SecretStr(raw)
        if isinstance(current, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
    except ValueError as exc:
        raise SettingError(
            f"{PREFIX}{name.upper()}={raw!r} is not a valid {type(current).__name__}: "
            "fix or unset it (core/config.py lists each setting with its type and default)"
        ) from exc
    return raw


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``); keyword overrides win."""
    environ = dict(os.environ if environ is None else environ)
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = PREFIX + f.name.upper()
        if key in environ:
            values[f.name] = _coerce(environ[key], getattr(base, f.name), f.name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
