"""TLS: certificate faults on Caddy's names and probes of what clients are served
(``lkchaos.tls``)."""
