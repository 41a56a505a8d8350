"""The voice services of the lkchaos system under test.

- :mod:`voicestack.whisper_server`: OpenAI-compatible speech-to-text (faster-whisper tiny.en).
- :mod:`voicestack.mcp_server`: MCP tool server (arithmetic, time, capitals).
- :mod:`voicestack.agent`: the LiveKit voice agent (livekit-agents 1.8).
- :mod:`voicestack.dialogue`: the agent's rule-based dialogue (pure Python).
"""
