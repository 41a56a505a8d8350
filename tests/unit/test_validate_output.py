"""The outputs of a whole-document run: terminal table, Markdown, JSON, JUnit, HTML sheet.

The HTML sign-off sheet is rendered by headless Chromium (offline, no request allowed) and
the rendered page's text is checked; the CLI is run with Click's runner.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from junitparser import Error, Failure, JUnitXml, Skipped
from PIL import Image

from lkchaos.cli import main
from lkchaos.settings import Settings
from lkchaos.validate import html, junit, output, runner, selection
from lkchaos.validate.model import Context, Finding, items
from tests.unit.answering import nodes_answer  # noqa: F401  (a fixture)
from tests.unit.test_report_chromium import CHROMIUM, WIDTH, chromium

CPU, RAM, DISK = "infra.minimum-4-cpu", "infra.minimum-8gb-ram", "infra.minimum-50gb-disk"
EGRESS, HEALTHY = "startup.egress-container-starts", "startup.containers-show-healthy"


def _finding(status: str, evidence: str):  # type: ignore[no-untyped-def]
    def found(ctx: Context) -> Finding:
        return Finding(status, evidence)  # type: ignore[arg-type]
    return found


def _raises(ctx: Context) -> Finding:
    raise OSError("engine <gone> & \x1b[31mred\x1b[0m")


CHECKS = {CPU: _finding("fail", "2 cores: 2 cores short of the minimum 4"),
          RAM: _finding("pass", "23.5 GiB of memory"), DISK: _finding("warn", "51 GiB free"),
          EGRESS: _finding("n/a", "no Egress is configured"), HEALTHY: _raises}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> runner.Report:
    state = tmp_path_factory.mktemp("state")
    return runner.run(selection.select(), Settings(state_dir=str(state)), checks=CHECKS,
                      target="reference stack")  # fmt: skip


def test_the_terminal_table_follows_the_document(report: runner.Report) -> None:
    lines = list(output.terminal_lines(report))
    text = "\n".join(lines)
    assert "\x1b[" in text  # styled; click.echo strips it when stdout is not a terminal
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    starts = [i for i, line in enumerate(plain) if line.startswith("== ")]
    assert [plain[i][3:-3] for i in starts] == list(dict.fromkeys(i.section for i in items()))
    item_lines = [line for line in plain if re.match(r"(pass|fail|warn|manual|n/a|error) ", line)]
    assert [line.split()[1] for line in item_lines] == [i.id for i in items()]
    cpu = next(line for line in item_lines if f" {CPU} " in line)
    assert cpu.startswith("fail ") and cpu.endswith(
        "Minimum 4 CPU cores available  [2 cores: 2 cores short of the minimum 4]")
    sign = next(line for line in item_lines if "signoff-technical.security" in line)
    assert "Security Team: Security requirements satisfied" in sign  # no Markdown marks
    assert plain[-1] == output.summary(report)
    assert plain[-1].startswith(f"{len(items())} items: 1 pass, 1 fail, 1 warn, ")
    assert plain[-1].endswith("(exit 1)")


def test_markdown_and_json(report: runner.Report) -> None:
    text = output.markdown(report)
    assert "## Sign-off Checklist\n\n### Technical Sign-off" in text
    assert (f"- [ ] Minimum 4 CPU cores available (**fail** `{CPU}`): 2 cores: 2 cores short "
            "of the minimum 4") in text
    assert f"- [x] Minimum 8GB RAM available (**pass** `{RAM}`)" in text
    assert "  - [ ] `lk.delo.sh` → Server IP (**manual**" in text  # a child, indented
    data = json.loads(output.as_json(report))
    assert [i["id"] for i in data["items"]] == [i.id for i in items()]
    assert data["counts"]["fail"] == 1 and data["exit_code"] == 1
    healthy = next(i for i in data["items"] if i["id"] == HEALTHY)
    assert healthy["status"] == "error" and healthy["evidence"].startswith("OSError: engine")


def test_junit_is_valid_with_one_case_per_item(report: runner.Report, tmp_path: Path) -> None:
    path = tmp_path / "validate.xml"
    path.write_text(junit.render(report), encoding="utf-8")
    ET.parse(path)  # well-formed, despite the escape sequence in an evidence
    xml = JUnitXml.fromfile(str(path))
    cases = {case.name: (suite.name, case) for suite in xml for case in suite}
    assert len(cases) == len(items()) == xml.tests
    assert (xml.failures, xml.errors) == (1, 1)
    assert xml.skipped == len(items()) - 5 + 1  # every manual item and the n/a one
    suite, cpu = cases[f"{CPU}: Minimum 4 CPU cores available"]
    assert suite == "Pre-Deployment Validation" and cpu.classname == "infra"
    [failure] = cpu.result
    assert isinstance(failure, Failure) and failure.message == CHECKS[CPU](None).evidence
    [error] = cases[f"{HEALTHY}: All containers show \"healthy\" status"][1].result
    assert isinstance(error, Error) and error.message.startswith("OSError: engine <gone> &")
    [skipped] = cases[f"{EGRESS}: Egress container starts without errors"][1].result
    assert isinstance(skipped, Skipped) and skipped.message == "n/a: no Egress is configured"
    [manual] = cases["docs.api-documentation-complete: API documentation complete"][1].result
    assert isinstance(manual, Skipped) and manual.message.startswith("link the document")
    assert cases[f"{RAM}: Minimum 8GB RAM available"][1].result == []


@pytest.fixture(scope="module")
def sheet(report: runner.Report, tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("sheet") / "signoff.html"
    page.write_text(html.render(report), encoding="utf-8")
    return page


def test_the_sheet_is_self_contained(sheet: Path) -> None:
    text = sheet.read_text()
    assert not re.search(r"""\b(?:src|href)=["']?(?:https?:|//)""", text)
    assert "<script" not in text and "<link" not in text and "@import" not in text


def test_the_rendered_sheet_has_every_item_the_blanks_and_the_approvals(
        sheet: Path, report: runner.Report) -> None:  # fmt: skip
    assert CHROMIUM is not None, "Chromium is missing: `bash scripts/bootstrap.sh` installs it"
    dom = chromium(sheet, "--dump-dom")
    body = re.sub(r"<[^>]+>", " ", dom.split("<body", 1)[1])
    words = " ".join(body.split())
    for item in items():
        assert item.id in words
    assert "Minimum 4 CPU cores available infra.minimum-4-cpu 2 cores: 2 cores short" in words
    assert "Security Team: Security requirements satisfied" in words
    counts = report.counts()
    assert dom.count('type="checkbox"') == counts["manual"] - 8  # sign-off rows get blanks
    assert words.count("Name Date") == 8
    assert "Deployment Approval : Date :" in words
    assert "Production Release Authorized By : Date :" in words
    # where the document has them: closing the sign-off section
    assert (words.index("Rollback plan ready") < words.index("Deployment Approval")
            < words.index("Post-Deployment Validation"))
    assert f"{counts['manual']} manual" in words and "1 fail" in words


def test_the_sheet_screenshot_shows_the_summary_colours(sheet: Path) -> None:
    shot = sheet.parent / "sheet.png"
    chromium(sheet, f"--screenshot={shot}", height=700)
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, 700)
    colours = {image.getpixel((x, y)) for x in range(0, WIDTH, 4) for y in range(0, 700, 4)}
    assert (0xDA, 0xFB, 0xE1) in colours and (0xFF, 0xD8, 0xD3) in colours  # pass, fail badges


# The command -------------------------------------------------------------------------------


@pytest.mark.usefixtures("nodes_answer")
def test_the_command_prints_plain_text_writes_the_files_and_exits_with_the_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # measure here
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    files = {kind: tmp_path / f"out.{kind}" for kind in ("md", "html", "xml", "json")}
    result = CliRunner().invoke(main, [
        "validate", "--only", f"{CPU},{RAM}", "--section", "infra", "--no-history",
        "--markdown", str(files["md"]), "--html", str(files["html"]), "--junit",
        str(files["xml"]), "--json", str(files["json"])])  # fmt: skip
    import os

    enough_cores = len(os.sched_getaffinity(0)) >= 4
    assert result.exit_code == (0 if enough_cores else 1), result.output
    assert "\x1b[" not in result.stdout  # not a terminal: no colour
    cpu = next(line for line in result.stdout.splitlines() if CPU in line)
    assert cpu.startswith("pass " if enough_cores else "fail ") and "on this machine" in cpu
    assert all(path.is_file() for path in files.values())
    assert [i["id"] for i in json.loads(files["json"].read_text())["items"]] == [CPU, RAM]


def test_unknown_names_exit_2_and_run_nothing(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "never.json"
    result = CliRunner().invoke(main, ["validate", "--section", "tsl", "--json", str(out)])
    assert result.exit_code == 2 and "unknown section(s): tsl" in result.stderr
    assert "Sections (with their group ids) are: Pre-Deployment Validation (infra)" in (
        result.stderr)
    assert not out.exists()


def test_list_prints_ids_and_help_documents_the_exit_codes() -> None:
    listed = CliRunner().invoke(main, ["validate", "--list", "--section", "signoff-business"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        i.id for i in items() if i.id.startswith("signoff-business.")]
    helped = CliRunner().invoke(main, ["validate", "--help"]).stdout
    assert "Exit status:" in helped and "2  could not run" in helped
    assert "(error): an item not shown" in helped
