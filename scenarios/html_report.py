"""The suite's HTML report: one self-contained file (plotly.js inline, so it opens offline).

Tables and Plotly charts with English and Chinese labels; a small inline script switches
between them. Every string that comes from results is escaped: into HTML with html.escape,
into the figures' JSON with `<`, `>` and `&` as \\u escapes, so no data can close a tag.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from cangtwin.scenarios.suite import STAGES

# (English, Chinese) for every fixed string of the page.
TEXT: dict[str, tuple[str, str]] = {
    "title": ("cangtwin suite report", "cangtwin 场景套件报告"),
    "summary": ("Summary", "概要"),
    "scenario": ("Scenario", "场景"),
    "status": ("Status", "状态"),
    "replications": ("Replications", "重复次数"),
    "pass_rate": ("Pass rate", "通过率"),
    "crashed": ("Crashed", "崩溃"),
    "misses": ("Misses", "漏报"),
    "false_alarms": ("False alarms", "误报"),
    "fa_per_day": ("False alarms per site-day", "每站点日误报数"),
    "criteria": ("Criteria over replications", "各判据在重复运行中的结果"),
    "criterion": ("Criterion", "判据"),
    "detections": ("Detections", "检测"),
    "label": ("Label", "标签"),
    "detected": ("Detected", "检出次数"),
    "edge_latency": ("Edge latency, mean [95 % CI]", "边缘侧时延，均值 [95% 置信区间]"),
    "bank_latency": ("Bank-visible latency, mean [95 % CI]", "银行可见时延，均值 [95% 置信区间]"),
    "latency_chart": ("Detection latency per rule", "各规则检测时延分布"),
    "latency_axis": ("latency (s, simulated time)", "时延（秒，仿真时间）"),
    "rule": ("rule", "规则"),
    "edge": ("edge", "边缘侧"),
    "bank": ("bank-visible", "银行可见"),
    "stages_chart": ("Bank-visible latency by stage (mean over replications)", "银行可见时延分段（各次重复的均值）"),
    "sensing": ("sensing", "感知"),
    "edge_stage": ("edge processing", "边缘处理"),
    "transport": ("transport / buffer", "传输 / 缓存"),
    "cloud": ("cloud", "云端"),
    "fa_chart": ("False alarms per site-day (mean, 95 % CI)", "每站点日误报数（均值，95% 置信区间）"),
    "per_day_axis": ("false alarms per site-day", "每站点日误报数"),
    "pr_chart": ("Precision and recall per rule (all scenarios)", "各规则精确率与召回率（全部场景）"),
    "precision": ("precision", "精确率"),
    "recall": ("recall", "召回率"),
    "messages_chart": ("Message accounting", "消息核算"),
    "count_axis": ("messages (all replications)", "消息数（全部重复运行）"),
    "errors_title": ("Crashed replications", "崩溃的重复运行"),
    "seed": ("Seed", "随机种子"),
    "error": ("Error", "错误"),
    "rerun": ("Rerun alone", "单独重跑"),
    "provenance": ("Provenance", "来源信息"),
    "code_version": ("code version", "代码版本"),
    "seeds": ("seeds", "随机种子"),
    "seeds_rule": ("replication i uses the scenario's seed + i", "第 i 次重复使用场景种子 + i"),
    "SUCCESS": ("SUCCESS", "成功"),
    "ACCEPTABLE": ("ACCEPTABLE", "可接受"),
    "FAILURE": ("FAILURE", "失败"),
    "ERROR": ("ERROR", "错误"),
}
STAGE_TEXT = {"sensing": "sensing", "edge": "edge_stage", "transport": "transport", "cloud": "cloud"}
COUNTERS: dict[str, tuple[str, str]] = {
    "emitted": ("emitted by devices", "设备发出"),
    "edge_accepted": ("accepted at the edge", "边缘接收"),
    "edge_rejected": ("rejected at the edge", "边缘拒收"),
    "lost_on_links": ("lost on links", "链路丢失"),
    "lost_while_edge_down": ("lost while the edge was down", "边缘宕机期间丢失"),
    "outbox_appended": ("outbox appended", "发件箱写入"),
    "outbox_evicted": ("outbox evicted", "发件箱淘汰"),
    "outbox_pending": ("outbox pending", "发件箱待发"),
    "cloud_records": ("cloud records", "云端记录"),
    "cloud_duplicates": ("cloud duplicates", "云端重复"),
    "records_lost": ("records lost", "记录丢失"),
}
_STATUS_CLASS = {"SUCCESS": "ok", "ACCEPTABLE": "warn", "FAILURE": "bad", "ERROR": "bad"}


def _t(key: str, tag: str = "span") -> str:
    """A fixed string in both languages; the toggle swaps textContent, never markup."""
    en, zh = TEXT[key]
    return f'<{tag} class="t" data-en="{html.escape(en)}" data-zh="{html.escape(zh)}">{html.escape(en)}</{tag}>'


def _e(value: object) -> str:
    return html.escape(str(value))


def _ci(stat: dict) -> str:
    if stat["mean"] is None:
        return "—"
    ci = stat["ci95"]
    return f"{stat['mean']:.3f} s" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _status(status: str) -> str:
    return f'<td class="{_STATUS_CLASS.get(status, "")}">{_t(status) if status in TEXT else _e(status)}</td>'


def _summary(suite: dict) -> str:
    rows = []
    for s in suite["scenarios"]:
        fa = s["false_alarms"]
        per_day = "—" if fa["per_site_day"] is None else f"{fa['per_site_day']:.3f}"
        rows.append(
            f"<tr><td>{_e(s['scenario'])}</td>{_status(s['status'])}<td>{len(s['replications'])}</td>"
            f"<td>{s['pass_rate'] * 100:.0f} %</td><td>{s['errors']}</td><td>{s['misses']}</td>"
            f"<td>{fa['count']}</td><td>{per_day}</td></tr>")
    head = "".join(_t(k, "th") for k in ("scenario", "status", "replications", "pass_rate", "crashed", "misses",
                                         "false_alarms", "fa_per_day"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _criteria(suite: dict) -> str:
    rows = []
    for s in suite["scenarios"]:
        for name, counts in s["criteria"].items():
            cells = "".join(f'<td class="{_STATUS_CLASS[k] if v else ""}">{v}</td>' for k, v in counts.items())
            rows.append(f"<tr><td>{_e(s['scenario'])}</td><td>{_e(name)}</td>{cells}</tr>")
    head = "".join(_t(k, "th") for k in ("scenario", "criterion", "SUCCESS", "ACCEPTABLE", "FAILURE"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _detections(suite: dict) -> str:
    rows = []
    for s in suite["scenarios"]:
        for label, d in s["detections"].items():
            total = d["detected"] + d["missed"]
            rows.append(f"<tr><td>{_e(s['scenario'])}</td><td>{_e(label)}</td><td>{d['detected']} / {total}</td>"
                        f"<td>{_ci(d['edge_latency_s'])}</td><td>{_ci(d['bank_latency_s'])}</td></tr>")
    head = "".join(_t(k, "th") for k in ("scenario", "label", "detected", "edge_latency", "bank_latency"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _crashes(suite: dict) -> str:
    rows = [
        f"<tr><td>{_e(s['scenario'])}</td><td>{rep['seed']}</td><td>{_e(rep['error']['message'])}</td>"
        f"<td><code>{_e(rep['error']['rerun'])}</code></td></tr>"
        for s in suite["scenarios"] for rep in s["replications"] if rep["error"]
    ]
    if not rows:
        return ""
    head = "".join(_t(k, "th") for k in ("scenario", "seed", "error", "rerun"))
    return f"<h2>{_t('errors_title')}</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --- charts: each is (id, figure in English, the same labels in both languages) -------------

def _labels(title: str, x: str | None = None, y: str | None = None, names: list[str] | None = None,
            ticks: list[tuple[str, str]] | None = None) -> dict:
    """Layout and trace-name updates for each language, applied by the toggle."""
    out = {}
    for lang in (0, 1):
        layout = {"title.text": TEXT[title][lang]}
        if x:
            layout["xaxis.title.text"] = TEXT[x][lang]
        if y:
            layout["yaxis.title.text"] = TEXT[y][lang]
        if ticks is not None:
            layout["xaxis.ticktext"] = [t[lang] for t in ticks]
        out["en" if lang == 0 else "zh"] = {"layout": layout, "names": [TEXT[n][lang] for n in names] if names else None}
    return out


def _apply_english(fig: go.Figure, labels: dict) -> go.Figure:
    en = labels["en"]
    fig.update_layout({k.replace(".", "_"): v for k, v in en["layout"].items() if not k.startswith("xaxis.tick")})
    if "xaxis.ticktext" in en["layout"]:
        fig.update_xaxes(ticktext=en["layout"]["xaxis.ticktext"])
    if en["names"]:
        for trace, name in zip(fig.data, en["names"]):
            trace.name = name
    return fig


def _latency_chart(suite: dict) -> tuple[go.Figure, dict]:
    rules: dict[str, tuple[list, list]] = {"edge": ([], []), "bank": ([], [])}
    for s in suite["scenarios"]:
        for d in s["detections"].values():
            for sample in d["samples"]:
                for view in ("edge", "bank"):
                    value = sample[f"{view}_latency_s"]
                    if value is not None:
                        rules[view][0].append(sample["rule"])
                        rules[view][1].append(value)
    fig = go.Figure([go.Box(x=rules[v][0], y=rules[v][1], boxpoints="all", jitter=0.3) for v in ("edge", "bank")])
    values = rules["edge"][1] + rules["bank"][1]
    # Latencies span seconds to hours; a log axis shows both, but cannot place a zero.
    wide = bool(values) and min(values) > 0 and max(values) / min(values) > 100
    fig.update_layout(boxmode="group", yaxis_type="log" if wide else "linear")
    return fig, _labels("latency_chart", "rule", "latency_axis", ["edge", "bank"])


def _stages_chart(suite: dict) -> tuple[go.Figure, dict]:
    x, means = [], {st: [] for st in STAGES}
    for s in suite["scenarios"]:
        for label, d in s["detections"].items():
            if d["detected"]:
                x.append(f"{s['scenario']} / {label}")
                for st in STAGES:
                    means[st].append(d["stages_s"][st]["mean"])
    fig = go.Figure([go.Bar(x=x, y=means[st]) for st in STAGES])
    fig.update_layout(barmode="stack")
    return fig, _labels("stages_chart", None, "latency_axis", [STAGE_TEXT[st] for st in STAGES])


def _false_alarm_chart(suite: dict) -> tuple[go.Figure, dict]:
    x, y, up, down = [], [], [], []
    for s in suite["scenarios"]:
        per = s["false_alarms"]["per_replication"]
        if per["mean"] is None:
            continue
        x.append(s["scenario"])
        y.append(per["mean"])
        lo, hi = per["ci95"] or (per["mean"], per["mean"])
        up.append(hi - per["mean"])
        down.append(per["mean"] - lo)
    fig = go.Figure([go.Bar(x=x, y=y, error_y={"type": "data", "array": up, "arrayminus": down, "symmetric": False})])
    return fig, _labels("fa_chart", "scenario", "per_day_axis")


def _precision_recall_chart(suite: dict) -> tuple[go.Figure, dict]:
    rules = suite["totals"]["rules"]
    names = list(rules)
    fig = go.Figure([go.Bar(x=names, y=[rules[r][k] for r in names]) for k in ("precision", "recall")])
    fig.update_layout(barmode="group", yaxis_range=[0, 1.05])
    return fig, _labels("pr_chart", "rule", None, ["precision", "recall"])


def _messages_chart(suite: dict) -> tuple[go.Figure, dict]:
    present = {k for s in suite["scenarios"] for k in s["messages"]}
    keys = [k for k in COUNTERS if k in present] + sorted(present - COUNTERS.keys())  # in pipeline order
    ticks = [COUNTERS.get(k, (k, k)) for k in keys]
    fig = go.Figure([go.Bar(x=keys, y=[s["messages"].get(k, 0) for k in keys], name=s["scenario"])
                     for s in suite["scenarios"] if s["messages"]])
    fig.update_layout(barmode="group")
    fig.update_xaxes(tickmode="array", tickvals=keys, ticktext=[t[0] for t in ticks])
    return fig, _labels("messages_chart", None, "count_axis", None, ticks)


CHARTS = {
    "chart-latency": _latency_chart,
    "chart-stages": _stages_chart,
    "chart-false-alarms": _false_alarm_chart,
    "chart-precision-recall": _precision_recall_chart,
    "chart-messages": _messages_chart,
}


def _script_json(value: object) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` survives as itself."""
    text = json.dumps(value, cls=PlotlyJSONEncoder, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


_SCRIPT = """
const FIGURES = JSON.parse(document.getElementById("figures").textContent);
for (const [id, f] of Object.entries(FIGURES)) {
  Plotly.newPlot(id, f.figure.data, f.figure.layout, {responsive: true, displaylogo: false});
}
function setLanguage(lang) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll(".t")) { el.textContent = el.dataset[lang]; }
  for (const [id, f] of Object.entries(FIGURES)) {
    const text = f.labels[lang];
    Plotly.relayout(id, text.layout);
    if (text.names) { Plotly.restyle(id, {name: text.names}); }
  }
  for (const b of document.querySelectorAll("button[data-lang]")) { b.disabled = b.dataset.lang === lang; }
}
for (const b of document.querySelectorAll("button[data-lang]")) {
  b.addEventListener("click", () => setLanguage(b.dataset.lang));
}
"""

_STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; } .ok { color: #17702c; } .warn { color: #9a6700; } .bad { color: #b3261e; font-weight: bold; }
.chart { width: 100%; height: 440px; } nav { float: right; } code { font-size: 90%; }
"""


def render_html(suite: dict) -> str:
    figures = {}
    for chart_id, build in CHARTS.items():
        fig, labels = build(suite)
        _apply_english(fig, labels)
        figures[chart_id] = {"figure": fig.to_plotly_json(), "labels": labels}
    charts = "".join(f'<div id="{chart_id}" class="chart"></div>' for chart_id in CHARTS)
    provenance = (f"<p>{_t('code_version')}: <code>{_e(suite['code_version'])}</code> · {_t('replications')}: "
                  f"{suite['replications']} · {_t('seeds')}: {_t('seeds_rule')}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(TEXT['title'][0])}</title><style>{_STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        '<nav><button data-lang="en" disabled>English</button> <button data-lang="zh">中文</button></nav>'
        f"<h1>{_t('title')}</h1>"
        f"<h2>{_t('summary')}</h2>{_summary(suite)}"
        f"<h2>{_t('criteria')}</h2>{_criteria(suite)}"
        f"<h2>{_t('detections')}</h2>{_detections(suite)}"
        f"{_crashes(suite)}{charts}"
        f"<h2>{_t('provenance')}</h2>{provenance}"
        f'<script type="application/json" id="figures">{_script_json(figures)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(suite: dict, out: Path) -> Path:
    path = out / "report.html"
    path.write_text(render_html(suite), encoding="utf-8")
    return path
