"""The suite's HTML report: self-contained, charts present, both languages, and data escaped."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from cangtwin.scenarios.html_report import CHARTS, TEXT, render_html
from cangtwin.scenarios.suite import run_suite

HOSTILE = '</script><script>alert("owned")</script><img src=x onerror=alert(1)>'

# The demo theft, shortened, with an injection id that tries to break out of the page.
SCENARIO = f"""\
scenario: hostile
site: small
seed: 20260302
start: "2026-03-02T08:30"
duration: 20m
loans:
  - {{id: LN-A-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 700000, bays: [B01, B02, B09]}}
injections:
  - kind: unauthorized-outbound
    id: '{HOSTILE}'
    at: 10m
    lots: [B01-03, B02-01]
expectations:
  - kind: detect
    label: '{HOSTILE}'
    rule: outbound-unauthorized
    success_s: 2
    acceptable_s: 60
  - {{kind: no-false-alarms}}
"""


class _Page(HTMLParser):
    """Collects script elements, chart divs and the bilingual strings of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.ids: set[str] = set()
        self.bilingual: list[tuple[str, str]] = []
        self.external: list[str] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        self.external += [attrs[k] for k in ("src", "href") if k in attrs]
        if "data-en" in attrs:
            self.bilingual.append((attrs["data-en"], attrs["data-zh"]))
        if tag == "script":
            self._in_script = {"attrs": attrs, "text": ""}
            self.scripts.append(self._in_script)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self._in_script["text"] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("html")
    (base / "scenarios").mkdir()
    (base / "scenarios" / "hostile.yaml").write_text(SCENARIO, encoding="utf-8")
    suite = run_suite(base / "scenarios", 2, base / "out", 2, None)
    page = render_html(suite)
    parser = _Page()
    parser.feed(page)
    return suite, page, parser


def test_the_page_is_self_contained_with_three_scripts_none_from_data(report):
    _, page, parser = report
    assert len(parser.scripts) == 3  # plotly.js, the figures' JSON, the language toggle
    plotly_js, figures, toggle = parser.scripts
    assert "plotly" in plotly_js["text"][:2000].lower() and len(plotly_js["text"]) > 1_000_000  # inline, not a CDN link
    assert figures["attrs"] == {"type": "application/json", "id": "figures"}
    assert "setLanguage" in toggle["text"]
    assert HOSTILE not in page and "<img" not in page.split("</style>", 1)[1]
    assert "&lt;/script&gt;&lt;script&gt;alert(&quot;owned&quot;)" in page  # shown, as text


def test_every_chart_is_there_with_the_suite_data(report):
    suite, _, parser = report
    figures = json.loads(parser.scripts[1]["text"])
    assert set(figures) == set(CHARTS) and set(CHARTS) <= parser.ids
    edge, bank = figures["chart-latency"]["figure"]["data"]
    detection = suite["scenarios"][0]["detections"][HOSTILE]
    assert edge["x"] == ["outbound-unauthorized"] * 2 and edge["y"] == detection["edge_latency_s"]["values"]
    assert bank["y"] == detection["bank_latency_s"]["values"]
    stages = figures["chart-stages"]["figure"]["data"]
    assert [t["name"] for t in stages] == ["sensing", "edge processing", "transport / buffer", "cloud"]
    assert stages[0]["x"] == [f"hostile / {HOSTILE}"]  # the data survives escaping intact
    assert sum(t["y"][0] for t in stages) == pytest.approx(detection["bank_latency_s"]["mean"], abs=1e-5)
    [fa] = figures["chart-false-alarms"]["figure"]["data"]
    assert fa["x"] == ["hostile"] and fa["y"] == [0.0]
    precision, recall = figures["chart-precision-recall"]["figure"]["data"]
    # Every rule that raised anything is there; the theft's side effects (the bay scan, the forklift
    # leaving its zone) are explained, so every rule's precision is 1; only the primary has a recall.
    assert "outbound-unauthorized" in precision["x"] and precision["y"] == [1.0] * len(precision["x"])
    assert dict(zip(recall["x"], recall["y"]))["outbound-unauthorized"] == 1.0
    [messages] = figures["chart-messages"]["figure"]["data"]
    assert dict(zip(messages["x"], messages["y"]))["emitted"] == suite["scenarios"][0]["messages"]["emitted"]


def test_both_languages_are_in_the_page(report):
    _, _, parser = report
    figures = json.loads(parser.scripts[1]["text"])
    assert ("Summary", "概要") in parser.bilingual and ("Pass rate", "通过率") in parser.bilingual
    for chart in figures.values():
        assert chart["figure"]["layout"]["title"]["text"] == chart["labels"]["en"]["layout"]["title.text"]
        zh = chart["labels"]["zh"]["layout"]["title.text"]
        assert zh in {z for _, z in TEXT.values()} and zh != chart["labels"]["en"]["layout"]["title.text"]
    assert figures["chart-latency"]["labels"]["zh"]["names"] == ["边缘侧", "银行可见"]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_the_toggle_switches_every_label_to_chinese(report, tmp_path):
    """Runs the page's own script under node with a stand-in DOM and Plotly."""
    _, _, parser = report
    spans = [{"dataset": {"en": en, "zh": zh}, "textContent": en} for en, zh in parser.bilingual]
    harness = f"""
const spans = {json.dumps(spans)};
const buttons = [{{dataset: {{lang: "en"}}, addEventListener(e, f) {{ this.click = f; }}}},
                 {{dataset: {{lang: "zh"}}, addEventListener(e, f) {{ this.click = f; }}}}];
const calls = [];
global.document = {{documentElement: {{}}, getElementById: () => ({{textContent: {json.dumps(parser.scripts[1]["text"])}}}),
                    querySelectorAll: (sel) => sel === ".t" ? spans : buttons}};
global.Plotly = {{newPlot: (id) => calls.push(["newPlot", id]), relayout: (id, u) => calls.push(["relayout", id, u]),
                  restyle: (id, u) => calls.push(["restyle", id, u])}};
{parser.scripts[2]["text"]}
buttons[1].click();
console.log(JSON.stringify({{lang: document.documentElement.lang, text: spans.map((s) => s.textContent), calls}}));
"""
    (tmp_path / "page.js").write_text(harness, encoding="utf-8")
    done = subprocess.run(["node", tmp_path / "page.js"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["lang"] == "zh-CN" and state["text"] == [zh for _, zh in parser.bilingual]
    plotted = [c[1] for c in state["calls"] if c[0] == "newPlot"]
    relaid = {c[1]: c[2] for c in state["calls"] if c[0] == "relayout"}
    assert plotted == list(CHARTS) and relaid["chart-stages"]["title.text"] == "银行可见时延分段（各次重复的均值）"
    assert ["restyle", "chart-precision-recall", {"name": ["精确率", "召回率"]}] in state["calls"]


def test_the_report_file_loads_nothing_from_elsewhere(report, tmp_path):
    from cangtwin.scenarios.html_report import write_html

    suite, page, parser = report
    assert write_html(suite, tmp_path).read_text(encoding="utf-8") == page
    assert parser.external == []  # no src= or href=: the file works offline
