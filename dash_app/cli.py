"""`cangtwin dash [RESULTS_DIR]`: serve the dashboard on a local port."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress

from cangtwin.platform.config_file import InputError


@click.command("dash")
@click.argument("results_dir", required=False, type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (keep it local).")
@click.option("--users", type=click.Path(path_type=Path, dir_okay=False),
              help="Users file (per-bank logins); without it anyone may pick a viewer.")
def dash(results_dir: Path | None, port: int, host: str, users: Path | None) -> None:
    """Replay runs, inspect alerts and their evidence, compare suites and sweeps in a browser."""
    from cangtwin.dash_app.access import Access, load_users
    from cangtwin.dash_app.app import create_app
    from cangtwin.dash_app.results import ResultsError, open_folder

    console = Console(stderr=True)
    try:
        access = Access(load_users(users) if users else None)
        app = create_app(results_dir, access)
        if results_dir is not None:
            folder = open_folder(results_dir)
            runs = app.server.config["runs"]
            with Progress(console=console, transient=True) as progress:  # index event logs before the first page
                task = progress.add_task("indexing event logs", total=len(folder.runs))
                for path in list(folder.runs.values())[: runs.keep]:
                    runs.get(path)
                    progress.advance(task)
    except (InputError, ResultsError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"cangtwin dashboard on http://{host}:{port}/", err=True)
    app.run(host=host, port=port, debug=False)
