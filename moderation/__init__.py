"""The moderation service: review queue UI and JSON API, users and roles, labels onto the feedback
topic, uploads through the ingest ETL, explanations on demand.

Modules: ``auth`` (users, tokens, sessions, login rate limit), ``store`` (the review state in Redis),
``feedback`` (the Label producer), ``uploads``, ``explain``, ``api`` (``/api``), ``pages`` (HTML),
``app`` (wiring), ``cli`` (``misinfo moderate``, ``misinfo users``).
"""
