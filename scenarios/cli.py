"""The `cangtwin` command line."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cangtwin.platform.config_file import InputError

# Reports are read in CI logs too, where rich would assume 80 columns and fold every table.
console = Console(width=None if Console().is_terminal else 120)
errors = Console(stderr=True, emoji=False, highlight=False)


@click.group()
def main() -> None:
    """cangtwin: digital twin and test harness for movable-asset-financing warehouses."""


@main.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder for results; each run writes <out>/<scenario>-s<seed>/.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
def run(scenarios: tuple[Path, ...], out: Path, seed: int | None) -> None:
    """Run scenario files in virtual time and report detections, latencies and criteria."""
    from cangtwin.scenarios.result import build_result, passed
    from cangtwin.scenarios.run import run_scenario
    from cangtwin.scenarios.spec import load_scenario

    try:
        loaded = [load_scenario(path, seed) for path in scenarios]
    except InputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    all_passed = True
    for scenario in loaded:
        folder = out / f"{scenario.spec.scenario}-s{scenario.spec.seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "crash.log").unlink(missing_ok=True)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                          TimeElapsedColumn(), console=errors, transient=True) as bar:
                task = bar.add_task(f"{scenario.spec.scenario} (seed {scenario.spec.seed})", total=1.0)
                outcome = run_scenario(scenario, folder, progress=lambda done: bar.update(task, completed=done))
        except Exception:
            (folder / "crash.log").write_text(traceback.format_exc())
            errors.print(f"error: {scenario.source}: the run crashed; traceback in {folder / 'crash.log'}", markup=False)
            sys.exit(3)
        log_sha = outcome.log.write(folder / "events.jsonl")
        result = build_result(outcome, log_sha)
        (folder / "result.json").write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
        from cangtwin.scenarios.report import print_summary

        print_summary(console, result, scenario.site.spec.timezone)
        console.print(f"wrote {folder / 'result.json'} and {folder / 'events.jsonl'}")
        all_passed &= passed(result)
    sys.exit(0 if all_passed else 1)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--keys", type=click.Path(path_type=Path), default=None,
              help="The parties' public keys you trust (parties.json). Without it, a package's own keys are used.")
@click.option("--heads", type=click.Path(path_type=Path), default=None,
              help="Published signed tree heads (for a ledger log; default: ledger-heads.json beside it).")
@click.option("--quorum", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Signatures required on each tree head (N of M parties).")
def verify(path: Path, keys: Path | None, heads: Path | None, quorum: int) -> None:
    """Check an evidence package or a whole ledger log offline, trusting nothing from its producer."""
    from rich.table import Table

    from cangtwin.platform.ledger.verification import VerifyInputError, verify_path

    try:
        title, checks, ok = verify_path(path, keys, heads, quorum)
    except VerifyInputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for name, passed_check, detail in checks:
        table.add_row(name, "[green]ok[/]" if passed_check else "[bold red]FAILED[/]", detail)
    console.print(table)
    console.print("[green]verified[/]" if ok else "[bold red]verification failed[/]")
    sys.exit(0 if ok else 1)


@main.group()
def rules() -> None:
    """Rule sets: versioned files that banks edit."""


@rules.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
def rules_diff(old: Path, new: Path) -> None:
    """Show what changed between two rule files, rule by rule and parameter by parameter."""
    from rich.table import Table

    from cangtwin.platform.rules.diff import diff_rulesets
    from cangtwin.platform.rules.ruleset import load_ruleset

    try:
        before, after = load_ruleset(old), load_ruleset(new)
    except InputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    console.print(f"{before.label}  →  {after.label}")
    changes = diff_rulesets(before, after)
    if not changes:
        console.print("no rule changed")
        return
    table = Table()
    for col in ("rule", "change", "old", "new"):
        table.add_column(col)
    for c in changes:
        table.add_row(c.rule, c.what, "" if c.old is None else str(c.old), "" if c.new is None else str(c.new))
    console.print(table)
