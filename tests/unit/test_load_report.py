"""A voice load ramp as a report: from its JSON file and from the run history, as HTML
(rendered by headless Chromium, offline) and Markdown."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from PIL import Image

from lkchaos.cli import main
from lkchaos.history import open_history
from lkchaos.load import record
from tests.unit.test_load_history import ramp_result
from tests.unit.test_report_chromium import WIDTH, _figures, chromium


def _ramp_file(folder: Path) -> Path:
    path = folder / "ramp.json"
    path.write_text(json.dumps(ramp_result(1_764_460_800.0)))
    return path


def test_a_ramp_file_becomes_a_page_and_a_table(tmp_path: Path) -> None:
    out, md = tmp_path / "ramp.html", tmp_path / "ramp.md"
    done = CliRunner().invoke(main, ["report", "--load", str(_ramp_file(tmp_path)), "-o",
                                     str(out), "--markdown", str(md)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert done.output.split() == [str(out), str(md)]
    page = out.read_text()
    assert "Knee at 4 callers" in page and "most callers within budget: <b>2</b>" in page
    assert "p95 1.90 s over the budget of 1.2 s" in page and "no room left" in page
    assert page.count("<tr>") == 4 and 'data-plot="load"' in page
    assert "http://" not in page and "https://" not in page
    assert "Knee: 4 callers." in md.read_text()

    dom = chromium(out, "--dump-dom")
    [plot] = _figures(dom)
    assert int(plot["data-rendered-width"]) > 600 and int(plot["data-rendered-height"]) > 150
    shot = tmp_path / "shot.png"
    bottom = int(plot["data-rendered-top"]) + int(plot["data-rendered-height"])
    chromium(out, f"--screenshot={shot}", height=bottom + 40)
    left, top = int(plot["data-rendered-left"]), int(plot["data-rendered-top"])
    with Image.open(shot) as image:
        assert image.size == (WIDTH, bottom + 40)
        crop = image.convert("L").crop(
            (left, top, left + int(plot["data-rendered-width"]), bottom))
    dark = sum(crop.histogram()[:200])
    assert dark > 0.01 * crop.size[0] * crop.size[1], "the load plot is empty"


def test_a_ramp_from_the_history_is_reported_by_its_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    open_history(url).close()
    load_id = record.record(ramp_result(time.time()), "the reference stack", url)
    out = tmp_path / "from-history.html"
    done = CliRunner().invoke(main, ["report", "--load", load_id[:12], "--history-url", url,
                                     "-o", str(out), "--title", "Nightly ramp"])  # fmt: skip
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert "<h1>Nightly ramp</h1>" in page and load_id[:12] in page


def test_bad_load_reports_are_refused_clearly(tmp_path: Path) -> None:
    not_a_ramp = tmp_path / "journal.json"
    not_a_ramp.write_text(json.dumps({"experiment": {}}))
    def ramp_file(name: str, change: Any) -> str:
        result = ramp_result(0.0)
        change(result)
        path = tmp_path / name
        path.write_text(json.dumps(result))
        return str(path)

    cases = [
        (["--load", str(tmp_path / "missing.json")], "no load ramp file at"),
        (["--load", ramp_file("a.json", lambda r: r["steps"][0].pop("callers"))],
         "steps[0].callers is None, not a whole number"),
        (["--load", ramp_file("b.json", lambda r: r["plan"].update(step_s="15"))],
         "plan.step_s is '15', not a number"),
        (["--load", ramp_file("c.json", lambda r: r["steps"][2].update(breaks="slow"))],
         "steps[2].breaks must be a list of text"),
        (["--load", str(_ramp_file(tmp_path)), "--history-url", "sqlite:///x.sqlite"],
         "--history-url is for a load id"),
        (["--load", str(not_a_ramp)], "is not a load ramp's result"),
        (["--load", str(_ramp_file(tmp_path)), "--junit", "j.xml"], "give no journal files"),
        (["--load", "zz-not-an-id", "--history-url", f"sqlite:///{tmp_path / 'h.sqlite'}"],
         "not a load ramp id"),
    ]  # fmt: skip
    for args, message in cases:
        done = CliRunner().invoke(main, ["report", *args, "-o", str(tmp_path / "x.html")])
        assert done.exit_code != 0 and message in done.output, (args, done.output)
        assert not (tmp_path / "x.html").exists()
