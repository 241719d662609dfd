"""The embedded stack: broker, Redis, MLflow and a Ray head as child processes on loopback."""

from misinfo.devstack.stack import DevStack, StackError

__all__ = ["DevStack", "StackError"]
