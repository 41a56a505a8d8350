"""The reply audio of failed voice round trips: encoded where the reply is judged, kept as a
WAV file under the state folder by the probe, and never a cause of a different verdict."""

from __future__ import annotations

import base64
import io
import logging
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lkchaos.voice import roundtrip
from lkchaos.voice.probes import keep_reply_audio, summarize_round_trips, voice_round_trip
from tests.unit.fake_prober import FakeProber

SECRETS = {"livekit": {"api_key": "key", "api_secret": "the-secret"}}


def _tone(seconds: float, rate: int = 48000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16)


def _read(wav: bytes) -> tuple[int, int, int, np.ndarray]:
    with wave.open(io.BytesIO(wav), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), frames


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_reply_audio_is_16_bit_mono_16_khz_and_keeps_its_pitch() -> None:
    channels, width, rate, frames = _read(roundtrip.reply_wav(_tone(1.0)))
    assert (channels, width, rate) == (1, 2, 16000)
    assert abs(frames.size - 16000) < 400  # the resampler's own delay, a few ms
    assert abs(_dominant_hz(frames, rate) - 440.0) < 5.0
    assert int(np.abs(frames).max()) > 8000  # the signal, not silence


def test_reply_audio_is_cut_to_its_first_twenty_seconds() -> None:
    _, _, rate, frames = _read(roundtrip.reply_wav(_tone(30.0)))
    assert rate == 16000
    assert 19.9 * rate <= frames.size <= 20.0 * rate


def test_reply_audio_at_a_low_rate_is_not_resampled() -> None:
    tone = _tone(0.5, rate=8000)
    _, _, rate, frames = _read(roundtrip.reply_wav(tone, rate=8000))
    assert rate == 8000 and np.array_equal(frames, tone)


def _outcome(ok: bool, pcm: np.ndarray | None) -> roundtrip.Outcome:
    stage = "ok" if ok else "wrong_reply"
    return roundtrip.Outcome(question="What is two plus three?", expected=["5", "five"],
                             room="lkchaos-probe-test", ok=ok, stage=stage, reply_pcm=pcm)


def test_only_a_failed_round_trip_with_reply_audio_carries_it() -> None:
    failed = roundtrip.result_of(_outcome(False, _tone(0.5)))
    _, _, rate, frames = _read(base64.b64decode(failed["reply_wav_b64"]))
    assert rate == 16000 and frames.size > 7000
    assert {k: v for k, v in failed.items() if k != "reply_wav_b64"} == (
        _outcome(False, _tone(0.5)).as_dict())
    assert "reply_wav_b64" not in roundtrip.result_of(_outcome(True, _tone(0.5)))
    assert "reply_wav_b64" not in roundtrip.result_of(_outcome(False, None))


def test_audio_that_cannot_be_encoded_leaves_the_verdict_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    not_audio = np.array(["not", "samples"])
    with caplog.at_level(logging.WARNING, logger="lkchaos.voice"):
        result = roundtrip.result_of(_outcome(False, not_audio))
    assert result == _outcome(False, None).as_dict()
    assert "could not keep the reply audio" in caplog.text


def _failed_result(wav: bytes | None) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "stage": "misheard", "reason": "heard 'six'",
                              "latency_s": 1.2, "question": "q", "heard": "six"}
    if wav is not None:
        result["reply_wav_b64"] = base64.b64encode(wav).decode()
    return result


def test_the_probe_keeps_the_audio_as_a_wav_file_under_the_state_folder(tmp_path: Path) -> None:
    wav = roundtrip.reply_wav(_tone(0.5))
    kept = keep_reply_audio(_failed_result(wav), tmp_path)
    path = Path(kept["audio"])
    assert path.is_absolute() and path.suffix == ".wav"
    assert path.parent.parent == tmp_path / "audio"
    assert len(path.parent.name) == 10 and path.parent.name[4] == "-"  # YYYY-MM-DD
    assert path.read_bytes() == wav
    assert _read(path.read_bytes())[2] == 16000
    assert {k: v for k, v in kept.items() if k != "audio"} == _failed_result(None)


def test_a_result_without_audio_is_returned_as_it_is(tmp_path: Path) -> None:
    result = _failed_result(None)
    assert keep_reply_audio(result, tmp_path) == result
    assert not (tmp_path / "audio").exists()


@pytest.mark.parametrize("problem", ["unwritable", "not base64"])
def test_audio_that_cannot_be_kept_is_left_out_and_logged(
    tmp_path: Path, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = _failed_result(roundtrip.reply_wav(_tone(0.2)))
    if problem == "unwritable":
        (tmp_path / "audio").write_text("a file where the folder should be")
    else:
        result["reply_wav_b64"] = "not base64 at all!"
    with caplog.at_level(logging.WARNING, logger="lkchaos.voice"):
        kept = keep_reply_audio(result, tmp_path)
    assert kept == _failed_result(None)
    assert "could not keep the reply audio" in caplog.text


def test_several_calls_keep_each_failed_calls_audio_in_their_summary() -> None:
    calls = [{**_failed_result(None), "audio": "/state/audio/2026-01-01/a.wav"},
             {"ok": True, "stage": "ok", "reason": "", "latency_s": 1.0}]
    verdict = summarize_round_trips(calls, 1, None)
    assert verdict["results"][0]["audio"] == "/state/audio/2026-01-01/a.wav"
    assert "audio" not in verdict["results"][1]


def test_audio_from_the_prober_reaches_the_hosts_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    wav = roundtrip.reply_wav(_tone(0.5))
    with FakeProber([_failed_result(wav)]) as prober:
        result = voice_round_trip(timeout=5, secrets=SECRETS,
                                  configuration={"voice_prober_url": prober.url})
    assert result["ok"] is False and result["stage"] == "misheard"
    assert "reply_wav_b64" not in result
    assert Path(result["audio"]).read_bytes() == wav
    assert Path(result["audio"]).is_relative_to(tmp_path.resolve() / "audio")
