"""Redis and Sentinel: probes and actions (``lkchaos.redis.probes``/``actions``)."""
