"""Loaded runs, kept in memory while the dashboard shows them (a few at a time)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cangtwin.dash_app.evidence import Prices, rulesets_for
from cangtwin.dash_app.replay import Replay
from cangtwin.dash_app.results import ResultsError, check_result, read_events
from cangtwin.dash_app.sensors import Sensors, load_sensors
from cangtwin.platform.config_file import InputError
from cangtwin.twin.site import MultiSite, Site, load_any_site

KEEP = 4  # runs held at once; a day at `medium` holds ~2M device emits


@dataclass
class RunView:
    path: Path
    result: dict
    site: Site
    replay: Replay
    others: list = field(repr=False)
    sensors: Sensors | None = None  # the recorded edge inputs, when the run kept them
    warehouses: dict[str, Site] = field(default_factory=dict)  # a multi-warehouse run's members, by id

    @cached_property
    def prices(self) -> Prices:
        return Prices(self.others)

    @cached_property
    def rulesets(self) -> list:
        return rulesets_for(self.result["provenance"])

    @property
    def timezone(self) -> str:
        return self.site.spec.timezone


def _site_of(result: dict, path: Path) -> tuple[Site, dict[str, Site]]:
    """The run's site and, for a multi-warehouse site, its warehouses (names prefixed `w2.`)."""
    name = result["provenance"].get("site")
    try:
        site = load_any_site(name)
    except InputError as exc:
        raise ResultsError(f"{path / 'result.json'}: site {name!r}: {exc.message}") from None
    if isinstance(site, MultiSite):
        return whole(site), {m.id: m for m in site.members}
    return site, {}


def whole(multi: MultiSite) -> Site:
    """Every warehouse's bays, devices, vehicles and gates in one site, for the replay model.

    The site's own `union()` view has no building or rates; the replay needs the heartbeat
    period, taken from the first warehouse (the reference sites all pin the same rates).
    """
    first = multi.members[0].spec
    union = multi.union()
    spec = union.spec.model_copy(update={"rates": first.rates, "building": first.building,
                                         "working_hours": first.working_hours, "truck": first.truck,
                                         "name": multi.spec.name})
    return Site(spec, union.source, union.sha256)


def load_run(path: Path) -> RunView:
    result = check_result(path / "result.json")
    site, warehouses = _site_of(result, path)
    emits, others = read_events(path / "events.jsonl", result["provenance"].get("event_log_sha256"))
    sensors = load_sensors(path, site)
    positions = sensors.positions if sensors is not None and sensors.positions else None
    replay = Replay(site, result, emits, others, positions)
    return RunView(path, result, site, replay, others, sensors, warehouses)


class RunCache:
    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._runs: OrderedDict[Path, RunView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> RunView:
        key = Path(path).resolve()
        with self._lock:
            if key in self._runs:
                self._runs.move_to_end(key)
                return self._runs[key]
        run = load_run(key)
        with self._lock:
            self._runs[key] = run
            while len(self._runs) > self.keep:
                self._runs.popitem(last=False)
        return run
