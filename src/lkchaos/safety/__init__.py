"""Safety: the fault ledger, the one-experiment-at-a-time lock, and recovery.

Every lkchaos action that injects a fault writes it to the ledger (with how to undo it)
before it acts, and removes it when it is undone. ``recover`` undoes whatever the ledger
still holds and then sweeps for anything lkchaos-shaped it could have left (toxics, paused or
stopped services), so even a runner killed with ``kill -9`` leaves nothing behind after
``lkchaos recover``.
"""
