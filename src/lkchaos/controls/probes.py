"""Probes on the run itself: the figures of the running sampling control.

``recovery`` returns, for one probe of the sampling control (``lkchaos.controls.sampling``)
declared in the same experiment::

    {"probe": "rooms-api", "run_id": "4f1c...", "fault_ended": true, "settled": true,
     "rto_s": 3.27, "time_to_detect_s": 0.41, "availability": 0.93,
     "availability_during_fault": 0.62, "recovered": true, "longest_outage_s": 3.5,
     "samples": 212, "failures": 14, "interval_median_s": 0.25, "interval_p95_s": 0.26, ...}

(every figure is defined in ``lkchaos.controls.figures``). "Recovered within 10 s", in the
steady-state hypothesis, which also runs after the method::

    {"type": "probe", "name": "rooms-api-recovered-within-10s",
     "tolerance": {"type": "range", "range": [0, 10], "target": "rto_s"},
     "provider": {"type": "python", "module": "lkchaos.controls.probes", "func": "recovery",
                  "arguments": {"probe": "rooms-api", "wait_s": 15, "stable_s": 1}}}

``rto_s`` is always a number here, so that a range tolerance never meets a null: before any
fault action has ended (the hypothesis's run before the method) it is 0.0 and
``fault_ended`` is false; while the probe has not recovered it is the time since the fault
ended, a lower bound, and ``recovered`` is false. Other figures may be null (e.g.
``time_to_detect_s`` when nothing failed).
"""

from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.controls.figures import settled
from lkchaos.controls.sampling import find_sampler, sampled_probes

__all__ = ["recovery"]


def recovery(
    probe: str,
    wait_s: float = 0.0,
    stable_s: float = 0.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Current figures (RTO, time to detect, availability...) of a probe the sampling control
    samples in this run.

    With ``wait_s`` and once a fault has ended, first wait up to ``wait_s`` seconds for the
    probe to be ok and to have stayed ok for ``stable_s`` seconds since the fault ended
    (``settled``), so that a recovery still under way can be measured. Set ``stable_s`` above
    the time the system takes to show the fault, or an early sample can look recovered.
    """
    for name, value in (("wait_s", wait_s), ("stable_s", stable_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ActivityFailed(f"{name} must be a number of seconds >= 0, not {value!r}")
    sampler = find_sampler(probe)
    if sampler is None:
        running = sampled_probes()
        raise ActivityFailed(
            f"no running sampling control samples a probe named {probe!r} (sampled now: "
            f"{running or 'none'}); declare lkchaos.controls.sampling in the experiment's "
            "controls with that probe"
        )
    if wait_s > 0 and sampler.fault().end_t is not None:
        sampler.wait_settled(float(stable_s), float(wait_s), [probe])
    fault = sampler.fault()
    figures = sampler.figures(probe)
    result: Dict[str, Any] = {
        "probe": probe,
        "run_id": sampler.run_id,
        "fault_ended": fault.end_t is not None,
        "settled": settled(sampler.samples(probe), fault, float(stable_s)),
        **figures,
    }
    if result["rto_s"] is None:
        result["rto_s"] = 0.0
    return result
