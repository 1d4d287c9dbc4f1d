"""The `cangtwin sweep` command (kept apart from the sweep machinery, which it imports only
when it runs, so `cangtwin --help` stays quick)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cangtwin.platform.config_file import InputError


def _fmt(stat: dict, digits: int = 3) -> str:
    if stat["mean"] is None:
        return "—"
    ci = stat["ci95"]
    return f"{stat['mean']:.{digits}f}" + (f" ±{(ci[1] - ci[0]) / 2:.{digits}f}" if ci else "")


def _table(document: dict):
    from rich.table import Table

    table = Table(title=f"Sweep {document['sweep']}: {len(document['points'])} point(s) × "
                        f"{document['replications']} replication(s), mean ±95 % CI half-width",
                  title_justify="left", caption_justify="left")
    for col in ("point", "parameters", "recall", "precision", "false alarms / site-day", "bank latency s",
                "money at risk CNY", "crashed"):
        table.add_column(col)
    for p in document["points"]:
        m = p["metrics"]
        table.add_row(p["id"], "\n".join(f"{k} = {v!r}" for k, v in p["params"].items()), _fmt(m["recall"]),
                      _fmt(m["precision"]), _fmt(m["false_alarms_per_site_day"]), _fmt(m["bank_latency_s"], 1),
                      _fmt(m["money_at_risk_cny"], 0), str(p["errors"]))
    for p in document["points"]:
        for rep in p["replications"]:
            if rep["error"]:
                table.caption = (table.caption + "\n" if table.caption else "") + (
                    f"{p['id']} seed {rep['seed']} crashed ({rep['error']['message']}); rerun alone: {rep['error']['rerun']}")
    return table


@click.command("sweep")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/sweep"), show_default=True,
              help="Sweep folder: points/<id>/ (inputs and replications), sweep.json, sweep.html.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Local worker processes (default: min(2, CPU count)).")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run the replications as Ray tasks on the cluster at ADDRESS (e.g. 10.0.0.5:6379).")
def sweep_command(file: Path, out: Path, workers: int | None, ray_address: str | None) -> None:
    """Run a sweep file: a grid or random search over scenario fields and rule parameters."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cangtwin.scenarios.sweep import exit_code, run_sweep

    errors = Console(stderr=True, emoji=False, highlight=False)
    console = Console(width=None if Console().is_terminal else 120)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=errors, transient=True, disable=not errors.is_terminal) as bar:
            task = bar.add_task("validating the sweep", total=None)
            document = run_sweep(file, out, workers, ray_address,
                                 lambda n, total, what: bar.update(task, completed=n, total=total, description=what))
    except InputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    console.print(_table(document))
    console.print(f"wrote {out / 'sweep.json'} and {out / 'sweep.html'}")
    sys.exit(exit_code(document))

