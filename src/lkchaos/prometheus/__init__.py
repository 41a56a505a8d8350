"""Prometheus: probes on the deployment's monitoring, and fault marks a person reading
Prometheus sees (``lkchaos.prometheus``)."""
