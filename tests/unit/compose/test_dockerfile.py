"""The project Dockerfile: CUDA runtime base, locked dependencies then the project with --no-deps,
a non-root user, no secrets, and only MISINFO_* variables the settings read. No engine needed."""

from __future__ import annotations

import re
from pathlib import Path

from core.config import env_names

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|KEY_ID|CREDENTIAL)")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_gpu_services_get_a_cuda_runtime_base() -> None:
    args = dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)
    base = args["CUDA_IMAGE"]
    assert base.startswith("nvidia/cuda:") and "-runtime-" in base
    stages = [rest for word, rest in instructions() if word == "FROM"]
    assert stages[-1].startswith("${CUDA_IMAGE}"), "the final stage must be the CUDA runtime image"


def test_locked_dependencies_then_the_project_without_deps() -> None:
    runs = [rest for word, rest in instructions() if word == "RUN"]
    lock = next(i for i, r in enumerate(runs) if re.search(r"-r \S*lock\.txt", r))
    project = next(i for i, r in enumerate(runs) if "--no-deps" in r)
    assert lock < project
    copies = [rest for word, rest in instructions() if word == "COPY"]
    assert any("requirements/lock.txt" in c for c in copies)


def test_runs_as_a_non_root_user() -> None:
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}


def test_no_secret_and_only_known_settings_in_the_image() -> None:
    known = set(env_names())
    for word, rest in instructions():
        if word not in {"ENV", "ARG"}:
            continue
        for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]:
            assert not SECRET_NAME.search(name), (
                f"{word} {name}: secrets are passed at run time, never built in"
            )
            if name.startswith("MISINFO_"):
                assert name in known, f"{word} {name}: no setting reads it"


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "compose", "**/.env", "**/*.env"):
        assert entry in ignored, f".dockerignore must list {entry}"
