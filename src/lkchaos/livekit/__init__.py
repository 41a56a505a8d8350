"""LiveKit servers: health, RoomService and room-state probes (``lkchaos.livekit``)."""
