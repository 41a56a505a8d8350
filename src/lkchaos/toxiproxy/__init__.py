"""Toxiproxy: probes and actions over its HTTP API (``lkchaos.toxiproxy``)."""
