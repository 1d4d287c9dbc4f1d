"""Who is looking: per-bank viewers and the operator, and what each may see.

With a users file (`cangtwin dash --users FILE`) a viewer logs in with a password (hashes as
Werkzeug writes them); without one the dashboard is a local tool and anyone may pick a viewer.
The login yields a token signed with the server's secret, and every callback that shows
alerts or pledges decodes it on the server, so a bank cannot widen its view from the browser.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

import pydantic
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.security import check_password_hash

from cangtwin.platform.config_file import StrictModel, parse_yaml_located, read_text

OPERATOR = "operator"


class User(StrictModel):
    role: Literal["bank", "operator"] = "bank"
    bank: str | None = None
    password: str  # a Werkzeug password hash, e.g. from werkzeug.security.generate_password_hash

    @pydantic.model_validator(mode="after")
    def _bank_needs_an_id(self) -> "User":
        if self.role == "bank" and not self.bank:
            raise ValueError("a bank viewer needs bank: the bank id its pledges are filed under")
        return self


class UsersFile(StrictModel):
    users: dict[str, User]


def load_users(path: str | Path) -> dict[str, User]:
    """Raises InputError naming the file, line and field of a bad users file."""
    spec, _locator = parse_yaml_located(read_text(Path(path)), UsersFile, str(path))
    return spec.users


class Access:
    def __init__(self, users: dict[str, User] | None = None, secret: str | None = None) -> None:
        self.users = users
        self._signer = URLSafeSerializer(secret or secrets.token_hex(32), salt="cangtwin-dash-viewer")

    @property
    def open_mode(self) -> bool:
        return self.users is None

    def login(self, name: str | None, password: str | None) -> str | None:
        """A signed token for the viewer, or None when the login is refused."""
        if not name:
            return None
        if self.users is None:
            return self._signer.dumps(name)  # open mode: the name is the viewer (operator or a bank id)
        user = self.users.get(name)
        if user is None or not password or not check_password_hash(user.password, password):
            return None
        return self._signer.dumps(OPERATOR if user.role == "operator" else user.bank)

    def viewer(self, token: str | None) -> str | None:
        """The viewer a token stands for: OPERATOR, a bank id, or None (not logged in)."""
        if not token:
            return OPERATOR if self.users is None else None
        try:
            return self._signer.loads(token)
        except BadSignature:
            return None


def may_see(viewer: str | None, banks: set[str]) -> bool:
    return viewer == OPERATOR or (viewer is not None and viewer in banks)
