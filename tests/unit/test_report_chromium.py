"""The HTML report as a browser renders it: headless Chromium, offline, no request allowed.

The report's own script records each plot's rendered box on its ``<figure>``
(``data-rendered-*``); the DOM Chromium dumps after layout is read back, and a screenshot of
the page is checked where the plots are.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from lkchaos.report import EntryInfo, GamedayInfo, write_reports

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1280



@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    # Never skipped: a report nobody looked at in a browser is not tested.
    if CHROMIUM is None:
        pytest.fail("Chromium is missing: `bash scripts/bootstrap.sh` installs it "
                    "(Debian: apt install chromium)")


def chromium(page: Path, *args: str, height: int = 900) -> str:
    """Run headless Chromium on ``page`` with name resolution disabled; its stdout."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--force-device-scale-factor=1", f"--window-size={WIDTH},{height}",
         "--virtual-time-budget=5000", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={page.parent / 'profile'}",
         *args, page.as_uri()],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    journals = sorted(FIXTURES.glob("*.json"))
    entries = [EntryInfo(p.stem, f"experiments/{p.stem}.json", 1, p, "held") for p in journals]
    entries.append(EntryInfo("cert-expiry", "experiments/cert-expiry.json", 1, None, "skipped",
                             note="an earlier entry failed"))
    day = GamedayInfo(name="weekly", run_id="5f0c", started_at="2026-11-30T00:40:00+00:00",
                      ended_at="2026-11-30T01:20:00+00:00", status="failed", entries=entries,
                      score=64.3, trend=[("2026-11-16T00:40:00+00:00", 81.0),
                                         ("2026-11-23T00:40:00+00:00", 77.5)])
    return write_reports(folder, [], title="Game day weekly", gameday=day, formats=["html"])[
        "html"]


def _figures(dom: str) -> list[dict[str, str]]:
    figures = []
    for tag in re.findall(r"<figure\b[^>]*>", dom):
        figures.append(dict(re.findall(r'([\w-]+)="([^"]*)"', tag)))
    return figures


def test_every_plot_is_laid_out_with_a_size(page: Path) -> None:
    dom = chromium(page, "--dump-dom")
    assert 'data-rendered="yes"' in dom  # the report's script ran (the page's policy allows it)
    figures = _figures(dom)
    assert [f["data-plot"] for f in figures] == ["trend"] + ["timeline"] * 4
    for figure in figures:
        assert int(figure["data-rendered-width"]) > 600, figure
        assert int(figure["data-rendered-height"]) > 150, figure
    assert not re.search(r"""\b(?:src|href)=["']?(?:https?:|//)""", dom)


def test_the_screenshot_shows_the_plots(page: Path) -> None:
    figures = _figures(chromium(page, "--dump-dom"))
    bottom = max(int(f["data-rendered-top"]) + int(f["data-rendered-height"]) for f in figures)
    shot = page.parent / "page.png"
    chromium(page, f"--screenshot={shot}", height=bottom + 40)
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, bottom + 40)
    for figure in figures:
        left, top = int(figure["data-rendered-left"]), int(figure["data-rendered-top"])
        box = (left, top, left + int(figure["data-rendered-width"]),
               top + int(figure["data-rendered-height"]))
        crop = image.crop(box)
        colours = crop.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50, f"{figure['data-plot']} looks blank"
        # Not only white: ink from the plot covers a visible share of the figure.
        grey = crop.convert("L")
        dark = sum(grey.histogram()[:200])
        assert dark > 0.01 * grey.size[0] * grey.size[1], f"{figure['data-plot']} is empty"
