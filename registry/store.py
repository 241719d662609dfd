"""The narrow interface in front of the MLflow model registry: register a version with its
artifacts, set/get aliases (``champion``, ``challenger``), get a version by alias, tag, list.

Nothing else in the project calls MLflow's registry API. A version's ``source`` is the artifact URI of
its model directory (a PEFT adapter with ``adapter_config.json`` or a full checkpoint with
``config.json``), which ``mlflow.artifacts.download_artifacts`` fetches; the evaluation report,
dataset manifest and optimization profile are artifacts of the same run, their URIs kept as tags.
:func:`resolve_model` turns a ``models:/<name>/<version|alias>`` reference into local paths.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.checkpoint import NotAModelDirectory, checkpoint_kind, model_location

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "misinfo.champion_history"  # registered-model tag: JSON list of past champions, oldest first
REGISTRY_PREFIX = "models:/"


class ModelRefError(RuntimeError):
    """A ``models:/<name>/<version|alias>`` reference that is malformed or names nothing."""


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    source: str  # artifact URI of the model directory
    run_id: str | None
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    created_ms: int = 0

    @property
    def profile_uri(self) -> str | None:
        return self.tags.get("profile_uri") or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
            "tags": self.tags,
            "created_ms": self.created_ms,
        }


class RegistryStore:
    """One registered model in one MLflow tracking server (which must have a database-backed registry)."""

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # ----------------------------------------------------------------------------------- versions

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            try:
                self.client.create_registered_model(self.name, description="misinfo detector (Qwen2.5-VL)")
            except MlflowException:  # created concurrently
                self.client.get_registered_model(self.name)

    def register(
        self,
        run_id: str,
        model_dir: str | Path,
        *,
        artifacts: dict[str, str | Path] | None = None,
        tags: dict[str, Any] | None = None,
        description: str = "",
    ) -> ModelVersionInfo:
        """Upload ``model_dir`` (and ``artifacts``: artifact path -> file or directory) to the run,
        then register a new version whose source is the uploaded model directory."""
        model_dir = Path(model_dir)
        try:
            checkpoint_kind(model_dir)
        except NotAModelDirectory as exc:
            raise ValueError(str(exc)) from None
        self.client.log_artifacts(run_id, str(model_dir), "model")
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        run_root = self.client.get_run(run_id).info.artifact_uri.rstrip("/")
        for dest, src in (artifacts or {}).items():
            src = Path(src)
            if src.is_dir():
                self.client.log_artifacts(run_id, str(src), dest)
                all_tags[f"{dest}_uri"] = f"{run_root}/{dest}"
            else:
                self.client.log_artifact(run_id, str(src), dest)
                all_tags[f"{dest}_uri"] = f"{run_root}/{dest}/{src.name}"
        self._ensure_model()
        mv = self.client.create_model_version(
            self.name, source=f"{run_root}/model", run_id=run_id, tags=all_tags, description=description
        )
        log.info("registered %s version %s from run %s", self.name, mv.version, run_id)
        return self.get(str(mv.version))

    def _info(self, mv: Any) -> ModelVersionInfo:
        return ModelVersionInfo(
            name=mv.name,
            version=str(mv.version),
            source=mv.source,
            run_id=mv.run_id,
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
            tags=dict(mv.tags or {}),
            created_ms=int(mv.creation_timestamp or 0),
        )

    def get(self, version: str | int) -> ModelVersionInfo:
        return self._info(self.client.get_model_version(self.name, str(version)))

    def list_versions(self) -> list[ModelVersionInfo]:
        """Every version, newest first."""
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
            aliases = dict(self.client.get_registered_model(self.name).aliases or {})
        except MlflowException:
            return []
        # Search results leave aliases out; the registered model has them (alias -> version).
        out = []
        for mv in found:
            info = self._info(mv)
            names = tuple(sorted(a for a, v in aliases.items() if str(v) == info.version))
            out.append(dataclasses.replace(info, aliases=names))
        return sorted(out, key=lambda v: int(v.version), reverse=True)

    def tag(self, version: str | int, key: str, value: Any) -> None:
        self.client.set_model_version_tag(self.name, str(version), key, str(value))

    # ------------------------------------------------------------------------------------ aliases

    def set_alias(self, alias: str, version: str | int) -> None:
        self._ensure_model()
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(self.name, alias)
        except MlflowException:
            pass

    def get_by_alias(self, alias: str) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def champion_history(self) -> list[str]:
        from mlflow.exceptions import MlflowException

        try:
            raw = self.client.get_registered_model(self.name).tags.get(HISTORY_TAG, "[]")
        except MlflowException:
            return []
        return [str(v) for v in json.loads(raw)]

    def set_champion_history(self, versions: list[str]) -> None:
        self._ensure_model()
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(versions[-50:]))

    # ---------------------------------------------------------------------------------- artifacts

    def download(self, uri: str, dst: str | Path) -> Path:
        """Fetch an artifact URI (a version's source, a report, a profile) into ``dst``."""
        import mlflow

        Path(dst).mkdir(parents=True, exist_ok=True)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        )

    def read_json(self, uri: str, dst: str | Path) -> dict[str, Any]:
        return json.loads(self.download(uri, dst).read_text())  # type: ignore[no-any-return]


def resolve_model(
    model: str, registry_uri: str | None, workdir: str | Path, base_model: str | None = None
) -> tuple[str, str | None]:
    """``(checkpoint path, adapter path or None)`` for a local path or ``models:/<name>/<version|alias>``.

    A registry version's model directory is downloaded into ``workdir``; when it is a PEFT adapter,
    the base checkpoint is ``base_model`` or the adapter's ``base_model_name_or_path``.
    """
    if not model.startswith(REGISTRY_PREFIX):
        return model, None
    name, _, ref = model[len(REGISTRY_PREFIX) :].partition("/")
    if not name or not ref:
        raise ModelRefError(
            f"registry model must read {REGISTRY_PREFIX}<name>/<version or alias>, got {model!r}"
        )
    if not registry_uri:
        raise ModelRefError(f"{model} needs a registry: --registry-uri (or MISINFO_MLFLOW_TRACKING_URI)")
    store = RegistryStore(registry_uri, name)
    info = store.get(ref) if ref.isdigit() else store.get_by_alias(ref)
    if info is None:
        raise ModelRefError(f"{name} has no version or alias {ref!r} in {registry_uri}")
    local = store.download(info.source, Path(workdir) / f"{name}-v{info.version}")
    base, adapter = model_location(local, base_model)
    if not base:
        raise ModelRefError(f"{model} is an adapter without a base model: pass --base-model")
    return base, adapter
