"""Start, stop and inspect the embedded stack: one pid file and one log file per component.

``up`` is idempotent (a healthy component is left alone), ``down`` signals each component's whole
process group and waits until it is gone, so nothing is left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from core import ports
from core.config import Settings
from misinfo.devstack.components import Component, components, host_port

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A component could not be started; the message carries the tail of its log."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    endpoint: str
    managed: bool  # started by this stack (else an external service, or not running)
    pid: int | None
    healthy: bool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def wait_for(condition, timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it is true or ``timeout_s`` passes (then raise TimeoutError)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


class DevStack:
    """The embedded stack for one state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = Path(settings.state_dir)
        self.run_dir = self.state / "run"
        self.log_dir = self.state / "logs"
        self.components = components(settings)

    def _pid_file(self, c: Component) -> Path:
        return self.run_dir / f"{c.name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid(self, c: Component) -> int | None:
        try:
            pid = int(self._pid_file(c).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def up(self, names: list[str] | None = None, progress=print) -> list[ComponentStatus]:  # type: ignore[no-untyped-def]
        """Start every component that is not already running and healthy; wait until all are healthy.

        On failure, what this call started is stopped again and :class:`StackError` carries the log."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._settle_ports(progress)
        started: list[tuple[Component, subprocess.Popen[bytes]]] = []
        for c in self._select(names):
            pid = self._pid(c)
            if pid is not None:
                progress(f"{c.name}: already running at {c.endpoint()} (pid {pid})")
                continue
            if c.healthy() and not self._pid_file(c).exists():
                # Not ours: say so, so nobody reads someone else's verdicts without knowing it.
                progress(
                    f"{c.name}: already running at {c.endpoint()}, NOT started by this stack "
                    f"({self.state}): using it as it is"
                )
                continue
            cmd = c.command(self.state)
            if cmd is None:
                progress(f"{c.name}: using the service already at {c.endpoint()}, NOT started by this stack")
                continue
            log_fh = open(self.log_file(c.name), "ab")  # noqa: SIM115 - the child keeps it open
            proc = subprocess.Popen(
                cmd,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **c.env()},
                start_new_session=True,  # own process group, for down
            )
            log_fh.close()
            self._pid_file(c).write_text(str(proc.pid))
            progress(f"{c.name}: starting (pid {proc.pid}, log {self.log_file(c.name)})")
            started.append((c, proc))
        for c, proc in started:
            deadline = time.monotonic() + c.start_timeout_s
            while not c.healthy():
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = (
                        "exited" if proc.poll() is not None else f"not healthy after {c.start_timeout_s:.0f}s"
                    )
                    # All or nothing: stop what this call started, so a failed `up` leaks nothing.
                    self.down([x.name for x, _ in started], progress=lambda *_: None)
                    raise StackError(f"{c.name} {why}; last log lines:\n{self._tail(c.name)}")
                time.sleep(0.25)
            progress(f"{c.name}: healthy at {c.endpoint()}")
        if any(c.name == "broker" for c, _ in started) or names is None or "broker" in names:
            self.create_topics()
        return self.status(names)

    def _settle_ports(self, progress) -> None:  # type: ignore[no-untyped-def]
        """On the first ``up`` in a state directory whose settings name no ports of their own, record
        the stack's ports there (the derived block, or a free one when something else holds it), so
        every later command finds this stack and only this one."""
        if ports.recorded(self.state) is not None:
            return
        derived = ports.derived(self.state)
        if self.stack_ports() != derived:
            return  # explicit addresses (compose, the tests): nothing to derive or record
        chosen = derived
        if not all(ports.port_free(p) for p in derived.all()):
            chosen = ports.free_block(self.state)
            progress(
                f"ports derived from {self.state} are in use by other processes; using {chosen.describe()}"
            )
            self.settings = replace(
                self.settings,
                kafka_bootstrap=f"127.0.0.1:{chosen.broker}",
                mlflow_tracking_uri=f"http://127.0.0.1:{chosen.mlflow}",
                ray_address=f"http://127.0.0.1:{chosen.ray_dashboard}",
                ray_gcs_port=chosen.ray_gcs,
            )
            self.components = components(self.settings)
        where = ports.record(self.state, chosen)
        progress(f"this stack's ports ({chosen.describe()}) are recorded in {where}")

    def stack_ports(self) -> ports.StackPorts:
        """The ports these settings give the broker, MLflow and the Ray head."""
        return ports.StackPorts(
            host_port(self.settings.kafka_bootstrap.split(",")[0], 9092)[1],
            host_port(self.settings.mlflow_tracking_uri, 5000)[1],
            host_port(self.settings.ray_address, 8265)[1],
            self.settings.ray_gcs_port,
        )

    def create_topics(self) -> None:
        """Create the configured topics (idempotent) with the configured partition count."""
        from core.kafka import create_topics, project_topics

        create_topics(self.settings.kafka_bootstrap, project_topics(self.settings), client_id="misinfo-dev")

    def down(self, names: list[str] | None = None, progress=print) -> None:  # type: ignore[no-untyped-def]
        """Stop every component this stack started: SIGTERM to its process group, SIGKILL after a wait."""
        for c in reversed(self._select(names)):
            pid = self._pid(c)
            if pid is None:
                self._pid_file(c).unlink(missing_ok=True)
                continue
            progress(f"{c.name}: stopping (pid {pid})")
            _signal_group(pid, signal.SIGTERM)
            try:
                wait_for(
                    lambda p=pid: not _alive(p) and not _group_alive(p),
                    c.stop_timeout_s,
                    what=f"{c.name} to stop",
                )
            except TimeoutError:
                _signal_group(pid, signal.SIGKILL)
                wait_for(lambda p=pid: not _group_alive(p), 10, what=f"{c.name} to die")
            self._pid_file(c).unlink(missing_ok=True)
            progress(f"{c.name}: stopped")

    def status(self, names: list[str] | None = None) -> list[ComponentStatus]:
        out = []
        for c in self._select(names):
            pid = self._pid(c)
            out.append(ComponentStatus(c.name, c.endpoint(), pid is not None, pid, c.healthy()))
        return out

    def _select(self, names: list[str] | None) -> list[Component]:
        if not names:
            return list(self.components)
        unknown = set(names) - {c.name for c in self.components}
        if unknown:
            raise ValueError(f"unknown components: {sorted(unknown)}")
        return [c for c in self.components if c.name in names]

    def _tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """True while any live process remains in the process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().split(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
