"""Sweep views: a heatmap over two swept parameters, and a threshold trade-off curve.

The sweep runner writes `sweep.json` (`cangtwin.sweep/…`). This reads its grid as a list of
points, each with the parameter values it ran (`params`) and numeric results (`metrics`),
under `points`; anything else is refused with a message saying what was expected.
"""

from __future__ import annotations

from cangtwin.dash_app import figures
from cangtwin.dash_app.i18n import tr
from cangtwin.dash_app.results import ResultsError

PREFERRED = ("recall", "false_alarms_per_site_day", "bank_latency_s", "precision")
FALSE_ALARMS = ("false_alarms_per_site_day", "fa_per_site_day")


def _points(doc: dict) -> list[dict]:
    points = doc.get("points")
    if not isinstance(points, list) or not points or not all(
            isinstance(p, dict) and isinstance(p.get("params"), dict) and isinstance(p.get("metrics"), dict)
            for p in points):
        raise ResultsError(f"sweep.json ({doc.get('format')}): expected `points`, a list of "
                           "{params: {...}, metrics: {...}}; found none")
    return points


def _numeric(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def sweep_figures(doc: dict, lang: str) -> list[dict]:
    points = _points(doc)
    params = list(points[0]["params"])
    metrics = _numeric(points[0]["metrics"])
    if not metrics:
        raise ResultsError("sweep.json: its points carry no numeric metrics")
    metric = next((m for m in PREFERRED if m in metrics), next(iter(metrics)))
    out = []
    if len(params) >= 2:
        x_name, y_name = params[0], params[1]
        xs = sorted({p["params"][x_name] for p in points}, key=str)
        ys = sorted({p["params"][y_name] for p in points}, key=str)
        cell = {(p["params"][x_name], p["params"][y_name]): _numeric(p["metrics"]).get(metric) for p in points}
        z = [[cell.get((x, y)) for x in xs] for y in ys]
        out.append(figures.heatmap([str(x) for x in xs], [str(y) for y in ys], z,
                                   tr("sweep_heatmap", lang, metric=metric, x=x_name, y=y_name), x_name, y_name))
    fa_key = next((k for k in FALSE_ALARMS if k in metrics), None)
    if fa_key and "recall" in metrics:
        ordered = sorted(points, key=lambda p: str(p["params"][params[0]]))
        curve = [(_numeric(p["metrics"])[fa_key], _numeric(p["metrics"])["recall"],
                  ", ".join(f"{k}={v}" for k, v in p["params"].items())) for p in ordered]
        out.append(figures.tradeoff(curve, fa_key, "recall", tr("tradeoff", lang)))
    return out
