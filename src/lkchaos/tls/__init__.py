"""TLS: certificate faults on the TLS proxy's names (Caddy or nginx) and probes of what
clients are served (``lkchaos.tls``)."""
