"""Private Mosquitto and PostgreSQL instances for live-mode tests.

Each instance listens on 127.0.0.1 at a free port and lives in a directory of its own, so tests never
touch (or depend on) the system-wide brokers and databases on the standard ports.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
# PostgreSQL refuses to initialise or run a cluster as root; it runs as this account when it exists,
# else as `nobody`, which always exists, so tests never add accounts to the machine.
PG_SERVICE_USER = "postgres"
PG_FALLBACK_USER = "nobody"
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class ServiceError(RuntimeError):
    """A private test service could not be started or stopped."""


class MissingBinary(ServiceError):
    """A program a service needs is not installed; `package` names what to install."""

    def __init__(self, program: str, package: str) -> None:
        super().__init__(f"{program!r} not found: install the {package!r} package (apt-get install {package})")
        self.program = program
        self.package = package


def skip_or_fail(error: MissingBinary) -> NoReturn:
    """Fail under CI (the image must ship the service), skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI is missing a test service: {error}", pytrace=False)
    pytest.skip(f"live-service test skipped: {error}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def find_program(name: str, package: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """Path of `name` on PATH or in `extra_dirs`, else MissingBinary naming `package`."""
    for directory in (None, *extra_dirs):
        found = shutil.which(name, path=directory)
        if found:
            return found
    raise MissingBinary(name, package)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log written at {path})"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or f"(log {path} is empty)"


class MosquittoInstance:
    """A running private broker; `stop()` (or leaving the `with` block) terminates it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> MosquittoInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _write_password_file(path: Path, passwords: dict[str, str]) -> None:
    passwd = find_program("mosquitto_passwd", "mosquitto", ("/usr/bin", "/usr/sbin"))
    path.unlink(missing_ok=True)
    for index, (user, password) in enumerate(passwords.items()):
        if ":" in user or not user:
            raise ServiceError(f"MQTT user name {user!r} is empty or contains ':'")
        create = ["-c"] if index == 0 else []
        done = subprocess.run([passwd, *create, "-b", str(path), user, password], capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"mosquitto_passwd failed for user {user!r} in {path}: {done.stderr.strip()}")
    path.chmod(0o600)


def start_mosquitto(
    workdir: Path, *, passwords: dict[str, str] | None = None, acl: str | None = None
) -> MosquittoInstance:
    """Start a broker on a free 127.0.0.1 port with its config, data and log in `workdir`.

    Anonymous clients are allowed only when no passwords are given. As root, mosquitto would switch
    to the `mosquitto` account, which cannot read a caller's private temp dir, so it is told to stay
    root (`user root`, accepted by mosquitto 2.0 with a warning).
    """
    binary = find_program("mosquitto", "mosquitto", ("/usr/sbin",))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        f"allow_anonymous {'false' if passwords else 'true'}",
        "persistence true",
        f"persistence_location {workdir}/",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    if passwords:
        password_file = workdir / "passwords"
        _write_password_file(password_file, passwords)
        lines.append(f"password_file {password_file}")
    if acl is not None:
        acl_file = workdir / "acl"
        acl_file.write_text(acl, encoding="utf-8")
        lines.append(f"acl_file {acl_file}")
    config = workdir / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    log_path = workdir / "mosquitto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    instance = MosquittoInstance(process, port, workdir)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_accepts(port):
        if process.poll() is not None:
            raise ServiceError(
                f"mosquitto exited with status {process.returncode} while starting (config {config}); "
                f"log tail:\n{_log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            instance.stop()
            raise ServiceError(
                f"mosquitto did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s; "
                f"log tail:\n{_log_tail(log_path)}"
            )
        time.sleep(0.02)
    return instance


def postgres_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres: pg_config's, then PATH's, then the newest Debian one."""
    needed = ("initdb", "pg_ctl", "postgres")
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def major(path: str) -> int:
        version = Path(path).parent.name
        return int(version) if version.isdigit() else -1

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in needed):
            return candidate
    raise MissingBinary("initdb/pg_ctl/postgres", "postgresql")


class PostgresInstance:
    """A running private PostgreSQL server with trust auth for the superuser `postgres`."""

    def __init__(self, bindir: Path, rundir: Path, port: int, as_user: list[str], owns_rundir: bool) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.rundir = rundir
        self.datadir = rundir / "data"
        self.log_path = rundir / "server.log"
        self._bindir = bindir
        self._as_user = as_user
        self._owns_rundir = owns_rundir
        self._stopped = False

    @property
    def pid(self) -> int:
        """The postmaster's process id, read from its pid file."""
        return int((self.datadir / "postmaster.pid").read_text(encoding="ascii").splitlines()[0])

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any sessions a test left open in it."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*self._as_user, str(self._bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S + 5)

    def stop(self) -> None:
        """Fast shutdown; removes the run directory only when it is a private one made by start_postgres."""
        if self._stopped:
            return
        if (self.datadir / "postmaster.pid").exists():
            done = self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT_S)))
            if done.returncode != 0:
                done = self._pg_ctl("stop", "-m", "immediate", "-w")
            if done.returncode != 0:
                raise ServiceError(f"pg_ctl could not stop the server in {self.datadir}: {done.stderr.strip()}")
        self._stopped = True
        if self._owns_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self) -> PostgresInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _service_account() -> tuple[list[str], str | None]:
    """Command prefix that drops root to the PostgreSQL account, and that account (None when not root)."""
    if os.geteuid() != 0:
        return [], None
    runuser = find_program("runuser", "util-linux", ("/usr/sbin", "/sbin"))
    for user in (PG_SERVICE_USER, PG_FALLBACK_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return [runuser, "-u", user, "--"], user
    raise ServiceError(f"running as root but neither {PG_SERVICE_USER!r} nor {PG_FALLBACK_USER!r} exists")


def start_postgres(workdir: Path) -> PostgresInstance:
    """initdb and start a server on a free 127.0.0.1 port, tuned for speed over durability.

    Unprivileged, the cluster lives in `workdir/postgres` and is left there. As root, the server runs
    as an unprivileged account that usually cannot enter the caller's private temp dir, so the cluster
    goes into a fresh directory in the system temp dir, owned by that account and removed by `stop()`.
    """
    bindir = postgres_bindir()
    as_user, account = _service_account()
    workdir.mkdir(parents=True, exist_ok=True)
    if account is None:
        rundir = workdir / "postgres"
        try:
            rundir.mkdir()
        except FileExistsError:
            raise ServiceError(f"{rundir} already exists: start_postgres needs a workdir of its own") from None
    else:
        rundir = Path(tempfile.mkdtemp(prefix="cangtwin-pg-"))
        entry = pwd.getpwnam(account)
        os.chown(rundir, entry.pw_uid, entry.pw_gid)
    socket_path = rundir / ".s.PGSQL.65535"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise ServiceError(f"unix socket path {socket_path} is longer than {MAX_SOCKET_PATH} bytes; use a shorter workdir")

    port = free_port()
    instance = PostgresInstance(bindir, rundir, port, as_user, owns_rundir=account is not None)
    initdb = [*as_user, str(bindir / "initdb"), "-D", str(instance.datadir), "-U", "postgres", "-A", "trust"]
    done = subprocess.run([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"], capture_output=True, text=True)
    if done.returncode != 0:
        instance.stop()
        raise ServiceError(f"initdb failed for {instance.datadir}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{rundir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "logging_collector": "off",
    }
    with open(instance.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# cangtwin test server\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    done = instance._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT_S)), "-l", str(instance.log_path))
    if done.returncode != 0:
        tail = _log_tail(instance.log_path)
        instance.stop()
        raise ServiceError(
            f"postgres did not become ready on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s "
            f"({done.stderr.strip()}); log tail:\n{tail}"
        )
    return instance
