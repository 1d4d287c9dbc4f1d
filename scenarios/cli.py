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
@click.option("--record-inputs", is_flag=True,
              help="Keep every frame that reached the edge (inputs.msgpack), for `cangtwin replay`.")
def run(scenarios: tuple[Path, ...], out: Path, seed: int | None, record_inputs: bool) -> None:
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
                outcome = run_scenario(scenario, folder, progress=lambda done: bar.update(task, completed=done),
                                       record_inputs=record_inputs)
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


def _suite_table(suite: dict):
    """One row per scenario: status, pass rate, crashes, misses, false alarms, worst latency CI."""
    from rich.table import Table

    style = {"SUCCESS": "green", "ACCEPTABLE": "yellow", "FAILURE": "bold red", "ERROR": "bold red"}
    table = Table(title=f"Suite: {suite['replications']} replication(s) per scenario (seed + i)", title_justify="left",
                  caption_justify="left")
    for col in ("scenario", "status", "pass rate", "crashed", "misses", "false alarms / site-day",
                "bank-visible latency, mean [95 % CI]"):
        table.add_column(col)
    for s in suite["scenarios"]:
        latencies = []
        for label, d in s["detections"].items():
            stat = d["bank_latency_s"]
            if stat["mean"] is not None:
                ci = f" [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]" if stat["ci95"] else ""
                latencies.append(f"{label}: {stat['mean']:.3f} s{ci}")
        per_day = s["false_alarms"]["per_site_day"]
        table.add_row(s["scenario"], f"[{style[s['status']]}]{s['status']}[/]", f"{s['pass_rate'] * 100:.0f} %",
                      str(s["errors"]), str(s["misses"]), "—" if per_day is None else f"{per_day:.3f}",
                      "\n".join(latencies) or "—")
    for s in suite["scenarios"]:
        for rep in s["replications"]:
            if rep["error"]:
                table.caption = (table.caption + "\n" if table.caption else "") + (
                    f"{s['scenario']} seed {rep['seed']} crashed ({rep['error']['message']}); "
                    f"rerun alone: {rep['error']['rerun']}")
    return table


def _replication_bar():
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=errors, transient=True)


@main.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--replications", "-n", type=click.IntRange(1, 10000), default=3, show_default=True,
              help="Seeded replications per scenario; replication i uses the scenario's seed + i.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/suite"), show_default=True,
              help="Suite folder: <out>/<scenario>/rep-<i>-s<seed>/, suite.json, junit.xml, report.html.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default: min(2, CPU count)).")
def suite(scenarios: tuple[Path, ...], replications: int, out: Path, workers: int | None) -> None:
    """Run a folder of scenarios (or the files given) N times each; write JUnit XML, JSON and HTML."""
    from cangtwin.scenarios.html_report import write_html
    from cangtwin.scenarios.junit import write_junit
    from cangtwin.scenarios.suite import exit_code, run_suite

    try:
        with _replication_bar() as bar:
            task = bar.add_task("replications", total=None)
            result = run_suite(list(scenarios), replications, out, workers,
                               lambda done, total, what: bar.update(task, completed=done, total=total, description=what))
    except InputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    console.print(_suite_table(result))
    console.print(f"wrote {out / 'suite.json'}, {write_junit(result, out)} and {write_html(result, out)}")
    sys.exit(exit_code(result))


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
def report(out: Path) -> None:
    """Recompute a suite's metrics and criteria from its kept event logs; rewrite junit.xml and report.html."""
    import msgspec

    from cangtwin.scenarios.html_report import write_html
    from cangtwin.scenarios.junit import write_junit
    from cangtwin.scenarios.suite import differences, exit_code, load_suite, recompute_suite, without_wall

    try:
        stored, _ = load_suite(out)
        with _replication_bar() as bar:
            task = bar.add_task("recomputing", total=None)
            recomputed, results = recompute_suite(
                out, lambda done, total, what: bar.update(task, completed=done, total=total, description=what))
        diffs = differences(without_wall(stored), without_wall(recomputed))
        for folder, result in results.items():
            path = out / folder / "result.json"
            try:
                kept = msgspec.json.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError) as err:
                raise InputError(str(path), None, None, f"cannot read: {err}") from None
            diffs += differences(without_wall(kept), without_wall(result), f"{folder}/result.json")
    except InputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    console.print(_suite_table(recomputed))
    if diffs:
        console.print(f"[yellow]the recomputation differs from what the suite wrote in {len(diffs)} place(s):[/]")
        for line in diffs[:20]:
            console.print(f"  {line}", markup=False)
    else:
        console.print("recomputed from the event logs: every metric and criterion equals suite.json "
                      "(wall-clock figures aside)")
    console.print(f"wrote {write_junit(recomputed, out)} and {write_html(recomputed, out)}")
    sys.exit(exit_code(recomputed))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--rules", type=click.Path(path_type=Path), default=None,
              help="The rule file to try (default: the rules the run used).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the replay (default: RUN_DIR/replay).")
def replay(run_dir: Path, rules: Path | None, out: Path | None) -> None:
    """Backtest: re-evaluate rules on a recorded run's inputs, without re-running the twin."""
    from rich.table import Table

    from cangtwin.scenarios.replay import replay_run, verdicts

    try:
        result, original = replay_run(run_dir, rules, out or run_dir / "replay")
    except InputError as err:
        errors.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    console.print(f"{original['provenance']['ruleset']}  →  {result['provenance']['ruleset']}")
    table = Table(title="Detections, original run vs replay", title_justify="left")
    for col in ("label", "original: rule", "bank latency", "replay: rule", "bank latency"):
        table.add_column(col)
    for label in original["labels"]:
        before, after = original["detections"].get(label["id"]), result["detections"].get(label["id"])
        def cell(d):
            return ("MISSED", "—") if d is None else (d["rule"], "—" if d["bank_latency_s"] is None else f"{d['bank_latency_s']:.3f} s")
        table.add_row(label["id"], *cell(before), *cell(after))
    console.print(table)
    same = verdicts(original) == verdicts(result)
    console.print(f"alerts: {len(original['alerts'])} → {len(result['alerts'])}; "
                  f"false alarms: {len(original['false_alarms'])} → {len(result['false_alarms'])}; "
                  f"verdicts {'identical' if same else 'changed'}")


def _register_commands() -> None:
    """Commands that live with the package they drive."""
    from cangtwin.platform.api.cli import api_token
    from cangtwin.dash_app.cli import dash
    from cangtwin.platform.live.cli import broker_config, serve
    from cangtwin.scenarios.fidelity import fidelity
    from cangtwin.scenarios.live.cli import live_provision, live_run
    from cangtwin.scenarios.site_show import site
    from cangtwin.scenarios.sweep_cli import sweep_command

    for command in (api_token, serve, broker_config, site, fidelity, dash, sweep_command, live_provision, live_run):
        main.add_command(command)


_register_commands()
