"""Chaos Toolkit controls of lkchaos, declared in an experiment's ``controls``.

- ``lkchaos.controls.sampling``: samples probes in the background during the whole run,
  records the series and marks in the journal, and derives availability, time to detect and
  time to recover (RTO). ``lkchaos.controls.probes.recovery`` reads those figures while the
  experiment runs, for tolerances such as "recovered within 10 s".

See ``controls/README.md`` at the repository root.
"""
