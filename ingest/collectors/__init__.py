"""One collector per source, on one base class (``base.Collector``)."""
