"""Safety: the fault ledger, the audit log, the run lock, recovery and the safety control.

Every lkchaos action that injects a fault writes it to the ledger (with how to undo it and
the id of the run) before it acts, and removes it when it is undone; each step is appended to
the audit log. At the end of a run the safety control undoes that run's faults.
``recover`` undoes whatever the ledger still holds and then sweeps for anything lkchaos-shaped
it could have left (toxics, paused or stopped services), so even a runner killed with
``kill -9`` leaves nothing behind after ``lkchaos recover``. ``secrets.scan`` finds the API
secret in files a run produced.
"""
