"""The Faust worker app: detection, sinks, dead letters, feedback, hot model swap, metrics."""
