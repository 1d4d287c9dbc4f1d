"""The sweep's HTML report (`sweep.html`): one self-contained page, English and 中文.

For every grid parameter, each figure plots a mean with its 95 % confidence interval against the
parameter's values (one line per combination of the other parameters): precision and recall,
false alarms, detection latency and money at risk. For a rule parameter, precision and recall
are that rule's, so the page shows a bank's threshold trade-off curves. A two-parameter grid
also gets heatmaps; a random search gets scatter plots against each parameter.
"""

from __future__ import annotations

import html
import numbers
from pathlib import Path
from typing import Any, Callable

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from cangtwin.scenarios.html_report import _SCRIPT, _STYLE, _script_json

TEXT: dict[str, tuple[str, str]] = {
    "title": ("cangtwin sweep report", "cangtwin 参数扫描报告"),
    "points": ("Points", "扫描点"),
    "point": ("Point", "扫描点"),
    "parameters": ("Parameters", "参数"),
    "recall": ("recall", "召回率"),
    "precision": ("precision", "精确率"),
    "fa_per_day": ("false alarms per site-day", "每站点日误报数"),
    "edge_latency": ("edge detection latency (s)", "边缘侧检测时延（秒）"),
    "bank_latency": ("bank-visible latency (s)", "银行可见时延（秒）"),
    "latency": ("detection latency (s, simulated time)", "检测时延（秒，仿真时间）"),
    "money": ("money at risk, unseen by the bank (CNY)", "银行未察觉的风险金额（元）"),
    "exposure": ("exposure until bank-visible (CNY·h)", "至银行可见前的风险敞口（元·小时）"),
    "crashed": ("Crashed", "崩溃"),
    "errors_title": ("Crashed replications", "崩溃的重复运行"),
    "seed": ("Seed", "随机种子"),
    "error": ("Error", "错误"),
    "rerun": ("Rerun alone", "单独重跑"),
    "charts": ("Charts (mean, 95 % CI over replications)", "图表（各次重复的均值与 95% 置信区间）"),
    "provenance": ("Provenance", "来源信息"),
    "code_version": ("code version", "代码版本"),
    "sweep_file": ("sweep file", "扫描文件"),
    "scenario": ("base scenario", "基准场景"),
    "replications": ("replications per point", "每个扫描点的重复次数"),
    "seeds_rule": ("replication i of every point uses the point's scenario seed + i",
                   "每个扫描点的第 i 次重复使用该点场景种子 + i"),
    "ran_on": ("ran on", "运行于"),
    "vs": ("vs", "随"),
    "tradeoff": ("threshold trade-off", "阈值权衡"),
    "of_rule": ("of rule", "规则"),
    "edge": ("edge", "边缘侧"),
    "bank": ("bank-visible", "银行可见"),
}

# (metric key in a point, what the y axis shows)
CURVES = (("precision", "precision"), ("recall", "recall"), ("false_alarms_per_site_day", "fa_per_day"),
          ("latency", "latency"), ("money_at_risk_cny", "money"), ("exposure_cny_h", "exposure"))


def _t(key: str, tag: str = "span") -> str:
    en, zh = TEXT[key]
    return f'<{tag} class="t" data-en="{html.escape(en)}" data-zh="{html.escape(zh)}">{html.escape(en)}</{tag}>'


def _e(value: object) -> str:
    return html.escape(str(value))


_NONE = {"mean": None, "ci95": None}


def _rule_of(field: str) -> str | None:
    return field.split(".")[1] if field.startswith("rules.") else None


def _stat(point: dict, metric: str, rule: str | None) -> dict:
    """A metric's {mean, ci95}: precision and recall of the swept rule when a rule is swept."""
    if rule and metric in ("precision", "recall"):
        return point["rules"].get(rule, {}).get(f"{metric}_ci") or _NONE
    return point["metrics"][metric]


def _x(value: Any) -> Any:
    return value if isinstance(value, numbers.Real) and not isinstance(value, bool) else repr(value)


def _error_bars(stats: list[dict], ceiling: float | None) -> dict:
    """The 95 % CI as error bars, cut at the figure's bounds: every figure is >= 0, and a ratio
    <= 1 (a t interval over few replications can reach past them; sweep.json keeps it whole)."""
    up, down = [], []
    for s in stats:
        if s["mean"] is None or not s["ci95"]:
            up.append(0)
            down.append(0)
            continue
        low, high = max(s["ci95"][0], 0.0), s["ci95"][1] if ceiling is None else min(s["ci95"][1], ceiling)
        up.append(max(high - s["mean"], 0.0))
        down.append(max(s["mean"] - low, 0.0))
    return {"type": "data", "array": up, "arrayminus": down, "symmetric": False, "visible": True}


def _ceiling(metric: str) -> float | None:
    return 1.0 if metric in ("precision", "recall") else None


def _labels(title: dict[str, str], x: str, y: str, names: dict[str, list[str]] | None) -> dict:
    return {lang: {"layout": {"title.text": title[lang], "xaxis.title.text": x, "yaxis.title.text": TEXT[y][i]},
                   "names": names[lang] if names else None}
            for i, lang in enumerate(("en", "zh"))}


def _groups(document: dict, field: str) -> list[tuple[str, list[dict]]]:
    """The points split by the values of the other parameters, each sorted along `field`."""
    order = {repr(v): i for i, v in enumerate(next(p for p in document["parameters"] if p["field"] == field)["values"])}
    others = [p["field"] for p in document["parameters"] if p["field"] != field]
    groups: dict[str, list[dict]] = {}
    for point in document["points"]:
        key = ", ".join(f"{f}={point['params'][f]!r}" for f in others)
        groups.setdefault(key, []).append(point)
    return [(key, sorted(points, key=lambda p: order[repr(p["params"][field])])) for key, points in groups.items()]


def _curve(document: dict, field: str, metric: str, y: str) -> tuple[go.Figure, dict]:
    """One metric against one grid parameter; `latency` draws the edge and bank-visible views."""
    rule = _rule_of(field)
    traces: list[go.Scatter] = []
    names: dict[str, list[str]] = {"en": [], "zh": []}
    if metric == "latency":  # per label, so a label that stops being caught ends its own line
        labels = sorted({label for p in document["points"] for label in p["labels"]})
        series = [(f"{view}_latency_s", view, label) for label in labels for view in ("edge", "bank")]
    else:
        series = [(metric, None, None)]
    for group, points in _groups(document, field):
        xs = [_x(p["params"][field]) for p in points]
        for key, view, label in series:
            stats = [(p["labels"].get(label, {}).get(key) or _NONE) if label else _stat(p, key, rule) for p in points]
            traces.append(go.Scatter(x=xs, y=[s["mean"] for s in stats], error_y=_error_bars(stats, _ceiling(key)),
                                     mode="lines+markers"))
            for i, lang in enumerate(("en", "zh")):
                parts = ([TEXT[view][i]] if view else []) + ([label] if label else []) + ([group] if group else [])
                names[lang].append(" · ".join(parts) or TEXT[y][i])
    fig = go.Figure(traces)
    fig.update_layout(showlegend=len(traces) > 1)
    if metric in ("precision", "recall"):
        fig.update_yaxes(range=[-0.05, 1.05])
    title = {}
    for i, lang in enumerate(("en", "zh")):
        shown = TEXT[y][i]
        if rule and metric in ("precision", "recall"):
            shown += f" ({TEXT['of_rule'][i]} {rule})"
        title[lang] = f"{shown} {TEXT['vs'][i]} {field}" + (f" — {TEXT['tradeoff'][i]}" if rule else "")
    return fig, _labels(title, field, y, names)


def _heatmap(document: dict, metric: str, y: str) -> tuple[go.Figure, dict]:
    fx, fy = (p["field"] for p in document["parameters"])
    xs = [repr(v) for v in document["parameters"][0]["values"]]
    ys = [repr(v) for v in document["parameters"][1]["values"]]
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    text: list[list[str]] = [[""] * len(xs) for _ in ys]
    rule = _rule_of(fx) or _rule_of(fy)
    for point in document["points"]:
        stat = _stat(point, metric, rule)
        j, i = xs.index(repr(point["params"][fx])), ys.index(repr(point["params"][fy]))
        z[i][j] = stat["mean"]
        if stat["mean"] is not None:
            half = f" ±{(stat['ci95'][1] - stat['ci95'][0]) / 2:.3g}" if stat["ci95"] else ""
            text[i][j] = f"{stat['mean']:.3g}{half}"
    fig = go.Figure(go.Heatmap(x=xs, y=ys, z=z, text=text, texttemplate="%{text}", colorscale="Viridis"))
    labels = _labels({lang: TEXT[y][i] for i, lang in enumerate(("en", "zh"))}, fx, y, None)
    for lang in ("en", "zh"):
        labels[lang]["layout"]["yaxis.title.text"] = fy
    return fig, labels


def _scatter(document: dict, field: str, metric: str, y: str) -> tuple[go.Figure, dict]:
    points = document["points"]
    rule = _rule_of(field)
    stats = [_stat(p, metric, rule) for p in points]
    fig = go.Figure(go.Scatter(x=[_x(p["params"][field]) for p in points], y=[s["mean"] for s in stats],
                               error_y=_error_bars(stats, _ceiling(metric)), mode="markers",
                               text=[p["id"] for p in points]))
    title = {lang: f"{TEXT[y][i]} {TEXT['vs'][i]} {field}" for i, lang in enumerate(("en", "zh"))}
    return fig, _labels(title, field, y, None)


def figures(document: dict) -> dict[str, tuple[go.Figure, dict]]:
    """Every chart of the page by element id."""
    charts: dict[str, tuple[go.Figure, dict]] = {}
    params = document["parameters"]
    if document["search"] == "grid":
        for n, param in enumerate(params):
            if len(param["values"]) < 2:
                continue
            for metric, y in CURVES:
                charts[f"curve-{n}-{metric}"] = _curve(document, param["field"], metric, y)
        if len(params) == 2 and all(len(p["values"]) > 1 for p in params):
            for metric, y in (("recall", "recall"), ("false_alarms_per_site_day", "fa_per_day"),
                              ("money_at_risk_cny", "money")):
                charts[f"heatmap-{metric}"] = _heatmap(document, metric, y)
    else:
        for n, param in enumerate(params):
            for metric, y in (("recall", "recall"), ("precision", "precision"),
                              ("false_alarms_per_site_day", "fa_per_day"), ("bank_latency_s", "bank_latency"),
                              ("money_at_risk_cny", "money")):
                charts[f"scatter-{n}-{metric}"] = _scatter(document, param["field"], metric, y)
    return charts


def apply_english(fig: go.Figure, labels: dict) -> go.Figure:
    """Lay the English labels onto the figure (the page's toggle swaps in the Chinese ones)."""
    en = labels["en"]
    fig.update_layout({k.replace(".", "_"): v for k, v in en["layout"].items()})
    if en["names"]:
        for trace, name in zip(fig.data, en["names"]):
            trace.name = name
    return fig


def _fmt(stat: dict, digits: int, ceiling: float | None = None) -> str:
    """Mean [95 % CI], the interval cut at the figure's bounds as in the charts."""
    if stat["mean"] is None:
        return "—"
    ci = stat["ci95"]
    if not ci:
        return f"{stat['mean']:.{digits}f}"
    low, high = max(ci[0], 0.0), ci[1] if ceiling is None else min(ci[1], ceiling)
    return f"{stat['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _points_table(document: dict) -> str:
    cols: list[tuple[str, Callable[[dict], str]]] = [
        ("recall", lambda p: _fmt(p["metrics"]["recall"], 3, 1.0)),
        ("precision", lambda p: _fmt(p["metrics"]["precision"], 3, 1.0)),
        ("fa_per_day", lambda p: _fmt(p["metrics"]["false_alarms_per_site_day"], 2)),
        ("edge_latency", lambda p: _fmt(p["metrics"]["edge_latency_s"], 1)),
        ("bank_latency", lambda p: _fmt(p["metrics"]["bank_latency_s"], 1)),
        ("money", lambda p: _fmt(p["metrics"]["money_at_risk_cny"], 0)),
        ("exposure", lambda p: _fmt(p["metrics"]["exposure_cny_h"], 0)),
        ("crashed", lambda p: str(p["errors"])),
        ("ran_on", lambda p: _e(", ".join(sorted({_where(r["executor"]) for r in p["replications"] if r["executor"]})))),
    ]
    head = _t("point", "th") + _t("parameters", "th") + "".join(_t(key, "th") for key, _ in cols)
    rows = []
    for p in document["points"]:
        params = "<br>".join(f"<code>{_e(k)}</code> = {_e(repr(v))}" for k, v in p["params"].items())
        rows.append(f"<tr><td>{_e(p['id'])}</td><td>{params}</td>" + "".join(f"<td>{cell(p)}</td>" for _, cell in cols)
                    + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _where(executor: dict) -> str:
    if executor["kind"] == "ray":
        return f"ray node {executor['node_id'][:8]}"
    return f"local {executor['host']}"


def _crashes(document: dict) -> str:
    rows = [f"<tr><td>{_e(p['id'])}</td><td>{rep['seed']}</td><td>{_e(rep['error']['message'])}</td>"
            f"<td><code>{_e(rep['error']['rerun'])}</code></td></tr>"
            for p in document["points"] for rep in p["replications"] if rep["error"]]
    if not rows:
        return ""
    head = "".join(_t(k, "th") for k in ("point", "seed", "error", "rerun"))
    return f"<h2>{_t('errors_title')}</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_sweep_html(document: dict) -> str:
    payload = {}
    for chart_id, (fig, labels) in figures(document).items():
        apply_english(fig, labels)
        payload[chart_id] = {"figure": fig.to_plotly_json(), "labels": labels}
    charts = "".join(f'<div id="{chart_id}" class="chart"></div>' for chart_id in payload)
    provenance = (
        f"<p>{_t('code_version')}: <code>{_e(document['code_version'])}</code> · {_t('sweep_file')}: "
        f"<code>{_e(document['source'])}</code> (sha256 {_e(document['sweep_sha256'][:12])}) · {_t('scenario')}: "
        f"<code>{_e(document['scenario'])}</code> · {_t('replications')}: {document['replications']} · "
        f"{_t('seeds_rule')}</p>")
    description = f"<p>{_e(document['description'])}</p>" if document["description"] else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(TEXT['title'][0])}: {_e(document['sweep'])}</title><style>{_STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        '<nav><button data-lang="en" disabled>English</button> <button data-lang="zh">中文</button></nav>'
        f"<h1>{_t('title')}: {_e(document['sweep'])}</h1>{description}"
        f"<h2>{_t('points')}</h2>{_points_table(document)}{_crashes(document)}"
        f"<h2>{_t('charts')}</h2>{charts}"
        f"<h2>{_t('provenance')}</h2>{provenance}"
        f'<script type="application/json" id="figures">{_script_json(payload)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_sweep_html(document: dict, out: Path) -> Path:
    path = out / "sweep.html"
    path.write_text(render_sweep_html(document), encoding="utf-8")
    return path
