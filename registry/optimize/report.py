"""Reporting a profile: a bar chart of the candidates and MLflow runs (one parent, a child per candidate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.optimize.candidates import RANK_BY, OptimizeError


def plot_candidates(doc: dict[str, Any], path: str | Path) -> Path:
    """A PNG bar chart of images/s per candidate, the chosen one and ineligible ones marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in doc["candidates"] if c["metrics"]]
    chosen = doc["choice"]["id"] if doc["choice"] else None
    colors = ["tab:green" if c["id"] == chosen else "tab:blue" if c["eligible"] else "tab:gray" for c in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows) + 2), 4.5))
    ax.bar([c["id"] for c in rows], [c["metrics"][RANK_BY] for c in rows], color=colors)
    for i, c in enumerate(rows):
        ax.annotate(
            f"{c['metrics']['label_agreement']:.2f}",
            (i, c["metrics"][RANK_BY]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_ylabel("images/s (median per batch)")
    ax.set_title(
        f"{doc['profile_id']} on {doc['machine']['device_kind']} (green: chosen, gray: ineligible)",
        fontsize=9,
    )
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def log_to_mlflow(doc: dict[str, Any], tracking_uri: str, experiment: str, artifacts: list[Path]) -> str:
    """One parent run (criteria, choice, profile + plot as artifacts), a child run per candidate."""
    try:
        import mlflow
    except ImportError as exc:  # pragma: no cover - mlflow is a project dependency
        raise OptimizeError("logging to MLflow needs `mlflow` installed") from exc

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"optimize {doc['profile_id']}") as parent:
        mlflow.set_tags(
            {
                "profile_id": doc["profile_id"],
                "device_kind": doc["machine"]["device_kind"],
                "choice": doc["choice"]["id"] if doc["choice"] else "none",
            }
        )
        mlflow.log_params(
            {
                "model": doc["model"]["path"],
                "adapter": doc["model"]["adapter_path"],
                "eval_images": doc["eval_set"]["images"],
                "min_agreement": doc["criteria"]["min_agreement"],
                "memory_budget_mb": doc["criteria"]["memory_budget_mb"],
                "baseline": doc["criteria"]["baseline"],
                "candidates": len(doc["candidates"]),
            }
        )
        for row in doc["candidates"]:
            with mlflow.start_run(run_name=row["id"], nested=True):
                mlflow.log_params(row["options"])
                mlflow.set_tags(
                    {
                        "status": row["status"],
                        "eligible": str(row["eligible"]),
                        "why_not": row["why_not"] or "",
                        "error": (row["error"] or "")[:500],
                    }
                )
                if row["metrics"]:
                    mlflow.log_metrics({k: float(v) for k, v in row["metrics"].items() if v is not None})
        if doc["choice"]:
            mlflow.log_metrics(
                {
                    "speedup_vs_baseline": doc["choice"]["speedup_vs_baseline"],
                    "label_agreement": doc["choice"]["label_agreement"],
                    "images_per_s": doc["choice"]["images_per_s"],
                }
            )
        for art in artifacts:
            mlflow.log_artifact(str(art))
        return str(parent.info.run_id)
