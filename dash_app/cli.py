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
@click.option("--live", "live_url", metavar="URL",
              help="Follow a running `cangtwin serve`: its bank API address, e.g. http://127.0.0.1:8080.")
@click.option("--token", envvar="CANGTWIN_API_TOKEN", metavar="TOKEN",
              help="The bank API token to follow it with (or CANGTWIN_API_TOKEN); it decides what is shown.")
@click.option("--keys", type=click.Path(path_type=Path, dir_okay=False),
              help="The parties' public keys you trust (parties.json), to pin evidence checks in live mode.")
def dash(results_dir: Path | None, port: int, host: str, users: Path | None, live_url: str | None,
         token: str | None, keys: Path | None) -> None:
    """Replay runs, inspect alerts and their evidence, compare suites and sweeps, or follow a live platform."""
    from cangtwin.dash_app.access import Access, load_users
    from cangtwin.dash_app.app import create_app
    from cangtwin.dash_app.live import LiveError, load_keys
    from cangtwin.dash_app.live_view import LiveConfig
    from cangtwin.dash_app.results import ResultsError, open_folder

    console = Console(stderr=True)
    try:
        access = Access(load_users(users) if users else None)
        if token and not live_url:
            raise LiveError("--token: give --live URL as well (the bank API to follow)")
        live = LiveConfig(live_url, token or "", load_keys(keys) if keys else None) if live_url else None
        app = create_app(results_dir, access, live)
        if results_dir is not None:
            folder = open_folder(results_dir)
            runs = app.server.config["runs"]
            with Progress(console=console, transient=True) as progress:  # index event logs before the first page
                task = progress.add_task("indexing event logs", total=len(folder.runs))
                for path in list(folder.runs.values())[: runs.keep]:
                    runs.get(path)
                    progress.advance(task)
    except (InputError, ResultsError, LiveError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"cangtwin dashboard on http://{host}:{port}/", err=True)
    app.run(host=host, port=port, debug=False)
