"""Open a results folder (a run, a suite or a sweep) and check what it claims to be.

Everything the dashboard reads from disk comes through here, so every way a folder can be
wrong (not a result, an unknown or older format, a truncated event log) becomes one
`ResultsError` with a readable, one-line message naming the file, instead of a traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from cangtwin.scenarios.result import RESULT_FORMAT
from cangtwin.scenarios.suite import SUITE_FORMAT

SWEEP_PREFIX = "cangtwin.sweep/"


class ResultsError(Exception):
    """A folder or file the dashboard cannot show; the message is what the page says."""


@dataclass(frozen=True)
class Folder:
    """A results folder: `runs` maps a display name to a run folder (one for a plain run)."""

    path: Path
    kind: str  # "run" | "suite" | "sweep"
    runs: dict[str, Path]
    document: dict = field(default_factory=dict)  # suite.json or sweep.json, {} for a run


def read_json(path: Path, what: str) -> dict:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{path}: missing ({what})") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({what}): {exc}") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{path}: not a JSON object ({what})")
    return doc


def check_result(path: Path) -> dict:
    """result.json of a run, refused unless its format is the one this dashboard reads."""
    doc = read_json(path, "a run's result")
    found = doc.get("format")
    if found != RESULT_FORMAT:
        if isinstance(found, str) and found.startswith("cangtwin.result/"):
            raise ResultsError(f"{path}: format {found!r} is an older or newer result format; "
                               f"this dashboard reads {RESULT_FORMAT!r} (re-run the scenario)")
        raise ResultsError(f"{path}: not a cangtwin result (format {found!r}, want {RESULT_FORMAT!r})")
    for key in ("provenance", "alerts", "labels", "messages"):
        if key not in doc:
            raise ResultsError(f"{path}: {key}: missing from the result")
    return doc


def open_folder(path: str | Path) -> Folder:
    """Say what a folder is: a run (result.json), a suite (suite.json) or a sweep (sweep.json)."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ResultsError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ResultsError(f"{folder}: not a folder (give a run, suite or sweep results folder)")
    if (folder / "result.json").is_file():
        result = check_result(folder / "result.json")
        name = f"{result['provenance'].get('scenario', folder.name)} (seed {result['provenance'].get('seed')})"
        return Folder(folder, "run", {name: folder})
    if (folder / "suite.json").is_file():
        return _suite(folder)
    if (folder / "sweep.json").is_file():
        return _sweep(folder)
    runs = {p.parent.name: p.parent for p in sorted(folder.glob("*/result.json"))}
    if runs:  # a folder holding several `cangtwin run` outputs
        return Folder(folder, "run", runs)
    raise ResultsError(f"{folder}: not a results folder: no result.json, suite.json or sweep.json "
                       "(give the --out folder of `cangtwin run`, `suite` or `sweep`)")


def _suite(folder: Path) -> Folder:
    doc = read_json(folder / "suite.json", "a suite's summary")
    if doc.get("format") != SUITE_FORMAT:
        raise ResultsError(f"{folder / 'suite.json'}: format {doc.get('format')!r}; this dashboard reads {SUITE_FORMAT!r}")
    if doc.get("result_format") != RESULT_FORMAT:
        raise ResultsError(f"{folder / 'suite.json'}: results are {doc.get('result_format')!r}; "
                           f"this dashboard reads {RESULT_FORMAT!r}")
    runs = {}
    for scenario in doc.get("scenarios", []):
        for rep in scenario.get("replications", []):
            if rep.get("error") is None and (folder / rep["folder"] / "result.json").is_file():
                runs[f"{scenario['scenario']} #{rep['index']} (seed {rep['seed']})"] = folder / rep["folder"]
    return Folder(folder, "suite", runs, doc)


def _sweep(folder: Path) -> Folder:
    doc = read_json(folder / "sweep.json", "a sweep's summary")
    fmt = doc.get("format")
    if not (isinstance(fmt, str) and fmt.startswith(SWEEP_PREFIX)):
        raise ResultsError(f"{folder / 'sweep.json'}: format {fmt!r} is not a cangtwin sweep")
    runs = {p.parent.relative_to(folder).as_posix(): p.parent for p in sorted(folder.rglob("result.json"))}
    return Folder(folder, "sweep", runs, doc)


# --- the event log ---------------------------------------------------------------------------

class Event(msgspec.Struct):
    t: float
    ev: str
    data: msgspec.Raw


class Emit(msgspec.Struct):
    device: str
    kind: str
    seq: int
    bytes: int


@dataclass(frozen=True)
class Emits:
    """Every `device.emit` of a log as columns: time, device and kind codes (into the name lists)."""

    t: np.ndarray
    device: np.ndarray
    kind: np.ndarray
    devices: list[str]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.t)


_event = msgspec.json.Decoder(Event)
_emit = msgspec.json.Decoder(Emit)
_any = msgspec.json.Decoder()
_CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cangtwin" / "dash"


def read_events(path: Path, log_sha256: str | None = None) -> tuple[Emits, list[tuple[float, str, dict]]]:
    """(device emits as columns, every other event as (t, ev, data)).

    Device emits are most of a log (~2M lines in a day at `medium`, ~13 s to decode here), so
    the decoded log is kept in a cache keyed by the log's SHA-256 (as the result cites it),
    size and modification time: a log edited or cut short afterwards is decoded afresh and
    its damage reported. A line that does not decode is an error naming the line.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ResultsError(f"{path}: missing (the run's event log)") from None
    cached = None
    if log_sha256:
        cached = cache_dir() / f"{log_sha256}-{stat.st_size}-{stat.st_mtime_ns}-v{_CACHE_VERSION}.npz"
        if cached.is_file():
            try:
                return _load_cache(cached)
            except (OSError, ValueError, KeyError, msgspec.DecodeError):
                pass  # an unreadable cache is rebuilt
    emits, others = _decode(path)
    if cached is not None:
        _save_cache(cached, emits, others)
    return emits, others


def _decode(path: Path) -> tuple[Emits, list[tuple[float, str, dict]]]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        raise ResultsError(f"{path}:{len(lines)}: the event log is truncated (its last line is incomplete)")
    times: list[float] = []
    devices: list[str] = []
    kinds: list[str] = []
    others: list[tuple[float, str, dict]] = []
    for n, line in enumerate(lines, 1):
        try:
            event = _event.decode(line)
            if event.ev == "device.emit":
                e = _emit.decode(event.data)
                times.append(event.t)
                devices.append(e.device)
                kinds.append(e.kind)
            else:
                others.append((event.t, event.ev, _any.decode(event.data)))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ResultsError(f"{path}:{n}: not a complete event ({exc}); the log is truncated or damaged") from None
    device_names, device_codes = np.unique(np.asarray(devices, dtype=object).astype(str), return_inverse=True) \
        if devices else (np.array([], dtype=str), np.array([], dtype=np.int64))
    kind_names, kind_codes = np.unique(np.asarray(kinds, dtype=object).astype(str), return_inverse=True) \
        if kinds else (np.array([], dtype=str), np.array([], dtype=np.int64))
    emits = Emits(np.asarray(times, dtype=np.float64), device_codes.astype(np.int32), kind_codes.astype(np.int16),
                  device_names.tolist(), kind_names.tolist())
    return emits, others


def _save_cache(path: Path, emits: Emits, others: list) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, t=emits.t, device=emits.device, kind=emits.kind,
                 devices=np.asarray(emits.devices, dtype=str), kinds=np.asarray(emits.kinds, dtype=str),
                 others=np.frombuffer(msgspec.msgpack.encode(others), dtype=np.uint8))
        tmp.replace(path)
    except OSError:
        pass  # no cache (a read-only home): the next open decodes again


def _load_cache(path: Path) -> tuple[Emits, list[tuple[float, str, dict]]]:
    with np.load(path, allow_pickle=False) as z:
        emits = Emits(z["t"], z["device"], z["kind"], z["devices"].tolist(), z["kinds"].tolist())
        others = [tuple(o) for o in msgspec.msgpack.decode(z["others"].tobytes())]
    return emits, others
