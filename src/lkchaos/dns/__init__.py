"""DNS: resolution probes and resolver faults (``lkchaos.dns``)."""
