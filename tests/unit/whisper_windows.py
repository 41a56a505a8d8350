"""Which window Whisper's encoder was given: the mel frames each segment was padded to."""

from __future__ import annotations

from typing import Any

import pytest


def record_windows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frames each segment is padded to from now on, recorded at faster-whisper's own
    ``faster_whisper.audio.pad_or_trim``: the windowed padding (the stack's Whisper server's
    and lkchaos's) calls it with the window chosen; faster-whisper without a window never
    calls it from there, so nothing is recorded then."""
    import faster_whisper.audio

    original = faster_whisper.audio.pad_or_trim
    seen: list[int] = []

    def recorded(array: Any, length: int = 3000, *, axis: int = -1) -> Any:
        out = original(array, length, axis=axis)
        seen.append(out.shape[axis])
        return out

    monkeypatch.setattr(faster_whisper.audio, "pad_or_trim", recorded)
    return seen
