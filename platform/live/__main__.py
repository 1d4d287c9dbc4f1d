"""`python -m cangtwin.platform.live serve CONFIG`: the same commands as `cangtwin serve`, without the harness."""

import click

from cangtwin.platform.live.cli import broker_config, serve


@click.group()
def main() -> None:
    """cangtwin live mode."""


main.add_command(serve)
main.add_command(broker_config)

if __name__ == "__main__":
    main()
