"""``python -m lkchaos.gameday``: the ``lkchaos gameday`` commands (the scheduler starts
game days this way, so that it needs neither ``PATH`` nor the main command)."""

from lkchaos.gameday.cli import gameday

if __name__ == "__main__":
    gameday(prog_name="lkchaos gameday")
