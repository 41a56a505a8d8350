"""Containers of the deployment, by compose service: probes and actions (``lkchaos.docker``)."""
