"""MLflow model registry: versions, aliases, evaluation gate, promotion, optimization profiles."""
