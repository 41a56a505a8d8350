"""Network faults inside a service's network namespace: partitions, packet loss on media
ports, bandwidth limits, UDP blocks (``lkchaos.network.actions``), applied by a short-lived
sidecar container with iptables and tc (``lkchaos.network.sidecar``)."""
