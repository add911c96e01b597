"""Operating smki (issue 12): logs, the access log and request ids, metrics, the admin listener.

Interfaces call in here; nothing here calls services except the readiness checks of the admin
listener (:mod:`smki.observability.health`).
"""
