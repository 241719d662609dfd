"""Collectors, the safe fetcher, ETL, blob store and the Kafka publisher of image events."""
