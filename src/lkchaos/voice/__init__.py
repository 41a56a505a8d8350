"""The spoken voice round-trip: a caller speaks, the agent must answer correctly, in time.

``roundtrip`` is the probe's engine (LiveKit rtc SDK, espeak-ng, in-process Whisper);
``prober`` serves it over HTTP from inside the stack's network; ``probes`` is the Chaos
Toolkit activity. Nothing here imports Chaos Toolkit except ``probes``.
"""
