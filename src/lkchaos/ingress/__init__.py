"""LiveKit Ingress: publish through RTMP and WHIP and check what reaches the room
(``lkchaos.ingress``)."""
