"""`cangtwin run` on broken scenario, site and rule files: one line naming file, line and field; exit 2.

Each case is a small edit of a reference file (the demo scenario, the small site, the default
rules) written to a temporary folder, so the expected line is computed from the text written.
The real console script runs in a subprocess, as a QA engineer or a CI job would run it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cangtwin"
DEMO = (REPO / "scenarios" / "library" / "demo-outbound.yaml").read_text(encoding="utf-8")
SMALL = (REPO / "twin" / "sites" / "small.yaml").read_text(encoding="utf-8")
RULES = (REPO / "platform" / "rules" / "default.yaml").read_text(encoding="utf-8")

Edits = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Case:
    """A broken copy of the reference files and where the error must point.

    `at` is a substring found on exactly one line of the blamed file: that line is the one the
    error must name. `at=None` means the error has no line (the file itself is the problem).
    """

    scenario: Edits = ()
    site: Edits | None = None  # when set, the scenario uses this edited copy of the small site
    rules: Edits | None = None  # when set, the scenario uses this edited copy of the default rules
    run: str = "scenario.yaml"  # what is passed to `cangtwin run`, relative to the folder
    blame: str = "scenario.yaml"
    at: str | None = None
    field: str | None = None
    message: str = ""
    extra: dict[str, str] = dataclass_field(default_factory=dict)  # further files to write as they are


def edited(text: str, edits: Edits) -> str:
    """Apply (regex, replacement) edits; each must match exactly once, so a changed reference file fails loudly."""
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"edit {pattern!r} must match once, matched {count} times"
    return text


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} must be on exactly one line, found on {hits}"
    return hits[0]


B01_RECT = re.search(r"\{id: B01, .*?rect: (\{[^}]*\})", SMALL)[1]
USE_RULES = (r"^(duration: .*)$", r"\1\nrules: myrules.yaml")

CASES = {
    # scenario file
    "wrong-type": Case(scenario=((r"^seed: .*$", "seed: twenty"),), at="seed: twenty", field="seed",
                       message="valid integer"),
    "wrong-type-nested": Case(scenario=((r"amount_cny: [\d.]+", "amount_cny: [1]"),), at="amount_cny",
                              field="loans[0].amount_cny", message="valid number"),
    "unknown-field": Case(scenario=((r"^(seed: .*)$", r"\1\ncolour: red"),), at="colour:", field="colour",
                          message="Extra inputs"),
    "unknown-field-nested": Case(scenario=((r"count: (\d+),", r"count: \1, colour: red,"),), at="colour",
                                 field="operations[0].colour", message="Extra inputs"),
    "missing-field": Case(scenario=((r"^seed: .*\n", ""),), at="scenario:", field="seed", message="Field required"),
    "missing-field-nested": Case(scenario=((r" bank: [\w-]+,", ""),), at="LN-A-001, borrower",
                                 field="loans[0].bank", message="Field required"),
    "broken-yaml": Case(scenario=((r"^(duration: .*)$", r"\1: 3"),), at="duration:", message="broken YAML"),
    "duplicate-key": Case(scenario=((r"^(duration: .*)$", r"\1\nseed: 7"),), at="seed: 7", field="seed",
                          message="duplicate key"),
    "unknown-lot": Case(scenario=((r"(kind: unauthorized-outbound.*lots: \[)[\w-]+", r"\1B01-99"),), at="B01-99",
                        field="injections[0].lots[0]", message="unknown lot 'B01-99'"),
    "time-beyond-duration": Case(scenario=((r"(kind: unauthorized-outbound.*at: )\w+", r"\g<1>999h"),),
                                 at="999h", field="injections[0].at", message="beyond the duration"),
    "operation-beyond-duration": Case(scenario=((r"(kind: inbound, at: )\w+", r"\g<1>999h"),), at="999h",
                                      field="operations[0].at", message="beyond the duration"),
    "unknown-rule": Case(scenario=((r"rule: [\w-]+, view: bank", "rule: teleport-detector, view: bank"),),
                         at="teleport-detector", field="expectations[0].rule", message="'teleport-detector'"),
    "unknown-injection-kind": Case(scenario=((r"kind: unauthorized-outbound", "kind: teleport"),), at="kind: teleport",
                                   field="injections[0].kind", message="'teleport'"),
    "bad-start": Case(scenario=((r"^start: .*$", 'start: "last tuesday"'),), at="start:", field="start",
                      message="ISO 8601"),
    "unknown-site-name": Case(scenario=((r"^site: small$", "site: smallish"),), at="site: smallish", field="site",
                              message="unknown site"),
    "empty-scenario": Case(extra={"empty.yaml": "# nothing here yet\n"}, run="empty.yaml", blame="empty.yaml",
                           at="nothing here", message="the file is empty"),
    "missing-scenario": Case(run="absent.yaml", blame="absent.yaml", message="file not found"),
    "directory-as-scenario": Case(extra={"sub/keep.txt": ""}, run="sub", blame="sub", message="is a directory"),
    "edge-knob-segment-too-big": Case(scenario=((r"^(duration: .*)$", r"\1\nedge: {outbox_max_bytes: 8192, outbox_segment_bytes: 65536}"),),
                                      at="outbox_segment_bytes", field="edge",
                                      message="outbox_segment_bytes must not exceed outbox_max_bytes"),
    "camera-move-without-target": Case(
        scenario=((r"^(injections:)$", r"\1\n  - {kind: camera-tamper, id: cam, at: 1m, camera: cam-gate, mode: move}"),),
        at="mode: move", field="injections[0]", message="needs look_at"),
    "unknown-camera": Case(
        scenario=((r"^(injections:)$", r"\1\n  - {kind: camera-tamper, id: cam, at: 1m, camera: cam-attic, mode: cover}"),),
        at="cam-attic", field="injections[0].camera", message="no camera 'cam-attic'"),
    "rules-update-missing-file": Case(
        scenario=((r"^(operations:)$", r"\1\n  - {kind: rules-update, at: 1m, file: nosuch-rules.yaml}"),),
        at="nosuch-rules.yaml", field="operations[0].file", message="no rule file"),
    # site file, referenced as `site: site.yaml`
    "site-wrong-type": Case(site=((r"height_m: [\d.]+", "height_m: tall"),), blame="site.yaml", at="height_m: tall",
                            field="building.height_m", message="valid number"),
    "site-unknown-field": Case(site=((r"^(  scale_hz: .*)$", r"\1\n  sirens_hz: 1"),), blame="site.yaml",
                               at="sirens_hz", field="rates.sirens_hz", message="Extra inputs"),
    "overlapping-bays": Case(site=((r"(\{id: B02, .*?rect: )\{[^}]*\}", rf"\g<1>{B01_RECT}"),), blame="site.yaml",
                             at="id: B02", field="bays[1].rect", message="overlaps bay B01"),
    "device-outside-building": Case(site=((r"(id: scale-wb1, .*?position: )\[[^\]]*\]", r"\1[9999.0, 14.5, 0.5]"),),
                                    blame="site.yaml", at="9999.0", field="devices[0].position",
                                    message="outside the building"),
    "unknown-time-zone": Case(site=((r"^timezone: .*$", "timezone: Mars/Olympus_Mons"),), blame="site.yaml",
                              at="timezone:", field="timezone", message="unknown time zone 'Mars/Olympus_Mons'"),
    "site-unknown-zone": Case(site=((r"(\{id: B03, zone: )[\w-]+", r"\1attic"),), blame="site.yaml",
                              at="zone: attic", field="bays[2].zone", message="unknown zone 'attic'"),
    # rule file, referenced as `rules: myrules.yaml`
    "unknown-rule-kind": Case(rules=((r"kind: message-integrity", "kind: teleport-integrity"),), blame="myrules.yaml",
                              at="kind: teleport-integrity", field="rules[1].kind", message="'teleport-integrity'"),
    "rule-param-wrong-type": Case(rules=((r"\bmin_lots: \d+", "min_lots: one"),), blame="myrules.yaml", at="min_lots: one",
                                  field="rules[0].params.min_lots", message="valid integer"),
    "rule-param-out-of-range": Case(rules=((r"replay_window: \d+", "replay_window: 0"),), blame="myrules.yaml",
                                    at="replay_window", field="rules[1].params.replay_window",
                                    message="greater than or equal to 1"),
    # files the scenario names but that are not there
    "missing-site-file": Case(scenario=((r"^site: small$", "site: nosuch-site.yaml"),), at="site: nosuch",
                              field="site", message="not found"),
    "missing-rules-file": Case(scenario=((r"^(duration: .*)$", r"\1\nrules: nosuch-rules.yaml"),),
                               at="rules: nosuch", field="rules", message="not found"),
}



@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str
    folder: str  # the case's own folder: the error must name a file in it
    blamed: str  # the path the error must name, as the CLI was given it
    line: int | None


def run_case(folder: Path, name: str) -> Outcome:
    case = CASES[name]
    where = folder / name
    where.mkdir()
    texts = {"scenario.yaml": edited(DEMO, case.scenario)}
    if case.site is not None:
        texts["scenario.yaml"] = edited(texts["scenario.yaml"], ((r"^site: small$", "site: site.yaml"),))
        texts["site.yaml"] = edited(SMALL, case.site)
    if case.rules is not None:
        texts["scenario.yaml"] = edited(texts["scenario.yaml"], (USE_RULES,))
        texts["myrules.yaml"] = edited(RULES, case.rules)
    texts.update(case.extra)
    for relative, text in texts.items():
        (where / relative).parent.mkdir(parents=True, exist_ok=True)
        (where / relative).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [str(CLI), "run", str(where / case.run), "--out", str(where / "out")],
        capture_output=True, text=True, timeout=120, cwd=where,
    )
    line = None if case.at is None else line_of(texts[case.blame], case.at)
    return Outcome(done.returncode, done.stderr, str(where), str(where / case.blame), line)


@pytest.fixture(scope="module")
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Outcome]]:
    """Run each selected case once, two at a time (a run costs ~1.5 s, mostly imports); tests share it."""
    folder = tmp_path_factory.mktemp("bad-input")
    selected = {
        item.callspec.params["name"] for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "name" in item.callspec.params
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {name: pool.submit(run_case, folder, name) for name in sorted(selected)}

        def get(name: str) -> Outcome:
            if name not in runs:
                runs[name] = pool.submit(run_case, folder, name)
            return runs[name].result()

        yield get


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_error_line_naming_the_file(outcome, name: str) -> None:
    result = outcome(name)
    assert "Traceback" not in result.stderr
    assert result.code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {result.folder}/"), lines[0]
    assert CASES[name].message in lines[0]


@pytest.mark.parametrize(
    "name",
    list(CASES),
)
def test_the_error_names_the_right_line_and_field(outcome, name: str) -> None:
    case, result = CASES[name], outcome(name)
    assert result.code == 2
    where = result.blamed if result.line is None else f"{result.blamed}:{result.line}"
    expected = f"error: {where}: {case.field}: " if case.field else f"error: {where}: "
    [line] = result.stderr.splitlines()
    assert line.startswith(expected), f"{line!r} should start with {expected!r}"


def test_the_offending_value_is_quoted_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "emoji.yaml"
    path.write_text(edited(DEMO, ((r"^scenario: .*$", 'scenario: ":warning:"'),)), encoding="utf-8")
    done = subprocess.run([str(CLI), "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "got ':warning:'" in done.stderr
