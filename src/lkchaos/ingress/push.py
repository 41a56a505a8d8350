"""Push a short RTMP test stream (test video and a sine tone) from this machine.

Either GStreamer's ``gst-launch-1.0`` (with ``rtmp2sink``, ``x264enc`` and ``voaacenc``:
Debian's ``gstreamer1.0-tools``, ``gstreamer1.0-plugins-base``, ``-good``, ``-bad`` and
``-ugly``) or ``ffmpeg`` (``libx264`` and ``aac``: Debian's ``ffmpeg``). ``auto`` takes the
first of the two found on ``PATH``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

PUSHERS = ("gst-launch-1.0", "ffmpeg")
#: What to install for each pusher, said when it is missing.
INSTALL = {
    "gst-launch-1.0": ("gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
                       "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly"),
    "ffmpeg": "ffmpeg",
}  # fmt: skip
#: The test picture: small, so a transcoding ingress on a small machine keeps up.
WIDTH, HEIGHT, FPS = 320, 240, 25
#: Characters of a pusher's stderr that :meth:`Push.error` returns.
ERROR_CHARS = 500


class PusherMissing(Exception):
    """No usable pusher is installed."""


def check_pusher(pusher: str) -> str:
    """``auto``, ``gst-launch-1.0`` or ``ffmpeg`` -> the pusher to use, which is installed."""
    if pusher not in ("auto", *PUSHERS):
        raise ValueError(f"pusher must be auto, gst-launch-1.0 or ffmpeg, not {pusher!r}")
    wanted = PUSHERS if pusher == "auto" else (pusher,)
    for name in wanted:
        if shutil.which(name) is not None:
            return name
    how = "; or ".join(f"{name}: apt-get install {INSTALL[name]}" for name in wanted)
    raise PusherMissing(
        f"pushing RTMP needs {' or '.join(wanted)} on PATH on the machine lkchaos runs on "
        f"(install {how})"
    )


def command(pusher: str, url: str, duration_s: float) -> list[str]:
    """The command that pushes ``duration_s`` seconds of test audio and video to ``url``."""
    if pusher == "ffmpeg":
        return [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate={FPS}",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", f"{duration_s:g}",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-g", str(FPS),
            "-c:a", "aac", "-b:a", "64k", "-ar", "48000",
            "-f", "flv", url,
        ]  # fmt: skip
    buffers = max(1, round(duration_s * FPS))
    # audiotestsrc's buffers hold 1024 samples at 48 kHz by default.
    audio_buffers = max(1, round(duration_s * 48000 / 1024))
    return [
        "gst-launch-1.0", "-q", "-e",
        "flvmux", "name=mux", "streamable=true", "!", "rtmp2sink", f"location={url}",
        "videotestsrc", "is-live=true", f"num-buffers={buffers}", "pattern=ball", "!",
        f"video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1", "!",
        "videoconvert", "!",
        "x264enc", "tune=zerolatency", "speed-preset=ultrafast", "bitrate=300",
        f"key-int-max={FPS}", "!", "h264parse", "!", "queue", "!", "mux.",
        "audiotestsrc", "is-live=true", f"num-buffers={audio_buffers}", "wave=sine", "!",
        "audio/x-raw,rate=48000,channels=2", "!", "audioconvert", "!",
        "voaacenc", "bitrate=64000", "!", "aacparse", "!", "queue", "!", "mux.",
    ]  # fmt: skip


@dataclass
class Push:
    """A running pusher; :meth:`stop` ends it (always call it, e.g. in ``finally``)."""

    process: subprocess.Popen[bytes]
    pusher: str
    started: float
    log: tempfile._TemporaryFileWrapper[bytes]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """End the pusher (SIGTERM, then SIGKILL after ``timeout``); its exit code."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
            return self.process.returncode
        finally:
            self.log.close()

    def error(self) -> str:
        """What the pusher wrote on stderr, from its first error on, at most
        :data:`ERROR_CHARS` characters: GStreamer's first ``ERROR:`` is the cause (an RTMP
        server's refusal, in ``rtmp2sink``'s), the ones after it its sources and queues
        stopping for it ("Internal data stream error"), which would push the cause out of a
        message's end. ``""`` once :meth:`stop` closed the log."""
        try:
            self.log.seek(0)
            said = self.log.read().decode(errors="replace").strip()
        except ValueError:  # closed by stop()
            return ""
        first = said.find("ERROR:")
        return said[max(first, 0):][:ERROR_CHARS]


def start(pusher: str, url: str, duration_s: float) -> Push:
    """Start pushing to ``url`` in the background."""
    argv = command(pusher, url, duration_s)
    # stderr goes to a file: a pipe nobody reads could fill and stall the pusher.
    log = tempfile.NamedTemporaryFile(prefix="lkchaos-push-", suffix=".log")
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=log)  # fmt: skip
    except OSError:
        log.close()
        raise
    return Push(process, pusher, time.monotonic(), log)
