"""The embedded stack's ports, private to one state directory.

Two people (or two checkouts, or a demo and a colleague's tests) on one machine each get a broker,
an MLflow server and a Ray head of their own: the ports belong to the state directory. They are
derived from its path (a block of :data:`BLOCK` consecutive ports between :data:`FIRST` and
:data:`LAST`, below the kernel's ephemeral range and the Ray head's worker ports), or, when that
block was taken by something else the first time ``misinfo dev up`` ran, the free block it chose
instead. ``dev up`` records the block in ``<state_dir>/run/ports.json``; every command reads the
record first, so all of them find the same services. Settings given explicitly
(``MISINFO_KAFKA_BOOTSTRAP``, ...) always win: compose, the chart and the tests name their own.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

FIRST, LAST = 10_000, 20_000
BLOCK = 6  # broker, MLflow, Ray dashboard, Ray GCS (+ the GCS port's two neighbours, see below)
RECORD = Path("run") / "ports.json"


@dataclass(frozen=True)
class StackPorts:
    """One stack's ports. The Ray head also listens on ``ray_gcs + 1`` (client server) and
    ``ray_gcs + 2`` (dashboard agent), which is why a block is six ports wide."""

    broker: int
    mlflow: int
    ray_dashboard: int
    ray_gcs: int

    @classmethod
    def from_base(cls, base: int) -> StackPorts:
        return cls(base, base + 1, base + 2, base + 3)

    def all(self) -> list[int]:
        """Every port the stack's own processes listen on."""
        return [
            self.broker,
            self.mlflow,
            self.ray_dashboard,
            self.ray_gcs,
            self.ray_gcs + 1,
            self.ray_gcs + 2,
        ]

    def describe(self) -> str:
        return (
            f"broker {self.broker}, MLflow {self.mlflow}, Ray dashboard {self.ray_dashboard}, "
            f"Ray GCS {self.ray_gcs}"
        )


def _blocks() -> int:
    return (LAST - FIRST) // BLOCK


def _root(state_dir: str | Path) -> Path:
    return Path(state_dir).expanduser().resolve()


def derived(state_dir: str | Path) -> StackPorts:
    """The block that the state directory's absolute path hashes to."""
    digest = hashlib.sha256(str(_root(state_dir)).encode()).digest()
    index = int.from_bytes(digest[:8], "big") % _blocks()
    return StackPorts.from_base(FIRST + index * BLOCK)


def recorded(state_dir: str | Path) -> StackPorts | None:
    """The block ``dev up`` recorded for this state directory, if any (an unreadable record: none)."""
    try:
        data = json.loads((_root(state_dir) / RECORD).read_text())
        return StackPorts(**{k: int(data[k]) for k in ("broker", "mlflow", "ray_dashboard", "ray_gcs")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stack_ports(state_dir: str | Path) -> StackPorts:
    """The ports every command uses for this state directory: the record, else the derived block."""
    return recorded(state_dir) or derived(state_dir)


def record(state_dir: str | Path, ports: StackPorts) -> Path:
    path = _root(state_dir) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(ports), indent=1) + "\n")
    tmp.replace(path)  # atomic: a command reading it never sees half a file
    return path


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_block(state_dir: str | Path) -> StackPorts:
    """The first block, starting at the derived one, whose ports are all free."""
    start = (derived(state_dir).broker - FIRST) // BLOCK
    for step in range(_blocks()):
        ports = StackPorts.from_base(FIRST + ((start + step) % _blocks()) * BLOCK)
        if all(port_free(p) for p in ports.all()):
            return ports
    raise OSError(f"no block of {BLOCK} free ports between {FIRST} and {LAST} on 127.0.0.1")
