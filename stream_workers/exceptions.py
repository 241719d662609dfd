"""Worker errors. Bad input becomes a dead letter; these are for the rest."""


class WorkerError(Exception):
    """Root of the workers' errors."""
