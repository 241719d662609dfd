"""The embedded stack's ports belong to its state directory; explicit settings win; the worker's and
the watcher's web servers bind where their settings say."""

from __future__ import annotations

import socket

from core import ports
from core.config import Settings, load_settings
from core.kafka import make_faust_app


def test_ports_are_derived_from_the_state_directory(tmp_path):
    a, b = ports.derived("/home/alice/.local/state/misinfo"), ports.derived("/home/bob/.local/state/misinfo")
    assert a == ports.derived("/home/alice/.local/state/misinfo/")  # stable: every command agrees
    assert a != b and not set(a.all()) & set(b.all())
    assert all(ports.FIRST <= p < ports.LAST for p in a.all())
    a = ports.derived(tmp_path / "alice")
    s = Settings(state_dir=str(tmp_path / "alice"))
    assert s.kafka_bootstrap == f"127.0.0.1:{a.broker}" and s.ray_gcs_port == a.ray_gcs
    assert s.mlflow_tracking_uri.endswith(f":{a.mlflow}") and s.ray_address.endswith(f":{a.ray_dashboard}")


def test_a_recorded_block_wins_and_explicit_settings_win_over_both(tmp_path):
    chosen = ports.StackPorts.from_base(12_000)
    ports.record(tmp_path, chosen)
    assert ports.stack_ports(tmp_path) == chosen
    assert load_settings({"MISINFO_STATE_DIR": str(tmp_path)}).kafka_bootstrap == "127.0.0.1:12000"
    s = load_settings({"MISINFO_STATE_DIR": str(tmp_path), "MISINFO_KAFKA_BOOTSTRAP": "kafka:9092"})
    assert s.kafka_bootstrap == "kafka:9092" and s.mlflow_tracking_uri == "http://127.0.0.1:12001"
    assert load_settings(s.env()) == s  # children get the resolved addresses


def test_a_taken_block_is_skipped(tmp_path):
    derived = ports.derived(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", derived.mlflow))
        holder.listen()
        free = ports.free_block(tmp_path)
    assert free != derived and derived.mlflow not in free.all()


def test_web_servers_bind_where_the_settings_say(tmp_path):
    s = Settings(state_dir=str(tmp_path))
    assert make_faust_app(s, "a", web_enabled=True).conf.web_bind == "127.0.0.1"  # not every interface
    wide = Settings(state_dir=str(tmp_path), worker_web_bind="0.0.0.0")
    assert make_faust_app(wide, "b", web_enabled=True).conf.web_bind == "0.0.0.0"
    app = make_faust_app(s, "c", web_enabled=True, web_port=7000, web_bind="10.1.2.3")
    assert (app.conf.web_bind, app.conf.web_port) == ("10.1.2.3", 7000)
