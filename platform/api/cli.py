"""`cangtwin api-token`: make a bearer token and the access-file entry that admits it.

The token is printed once, for the caller; the access file keeps only its SHA-256.
"""

from __future__ import annotations

import click
import pydantic
import yaml

from cangtwin.platform.api.access import TokenEntry, hash_token, new_token


@click.command("api-token")
@click.option("--name", required=True, help="who holds the token, e.g. bank-a-risk-desk")
@click.option("--role", type=click.Choice(["bank", "operator", "regulator"]), required=True)
@click.option("--bank", default=None, help="the bank a 'bank' token is scoped to")
@click.option("--expires", default=None, help="ISO 8601 time with zone, e.g. 2026-12-31T00:00:00Z")
def api_token(name: str, role: str, bank: str | None, expires: str | None) -> None:
    """Print a new bank-API token and the line to add under `tokens:` in the access file."""
    token = new_token()
    try:
        entry = TokenEntry.model_validate({"name": name, "role": role, "bank": bank, "sha256": hash_token(token),
                                           "expires": expires})
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = "".join(f"--{p}: " for p in first["loc"])  # empty for a rule across options
        raise click.UsageError(where + first["msg"].removeprefix("Value error, ")) from None
    line = entry.model_dump(mode="json", exclude_none=True)
    click.echo(f"token (give to {name}; shown only now): {token}")
    click.echo("access-file entry (add under tokens:):")
    click.echo("  - " + yaml.safe_dump(line, default_flow_style=True, allow_unicode=True, sort_keys=False,
                                        width=1_000).strip())
