"""Sweep files: a base scenario, the parameters to vary, and how (a grid or a seeded random search).

A parameter is a dotted field path. `rules.<rule id>.<field>...` addresses the rule set the
scenario starts with (e.g. `rules.substitution-or-hollow.params.tolerance_e`); anything else
addresses the scenario file itself (`twin.lidar_scans`, `injections.<id>.<field>`,
`loans.<id>.amount_cny`, `operations.<index>.at`, `edge.outbox_max_bytes`). Items of a list are
named by their `id`, or by their index when they have none.

Every point of the sweep is turned into a self-contained folder of input files (the scenario,
its site and rule files) and loaded with the same strict loader as `cangtwin run`, before
anything runs: a field that does not exist, or a value it cannot take, is an error naming the
sweep file, the line and the parameter.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml

from cangtwin.platform.config_file import InputError, Locator, Pair, StrictModel, parse_yaml_located, read_text
from cangtwin.platform.rules.ruleset import default_ruleset_path
from cangtwin.scenarios.spec import Scenario, load_scenario

SCENARIO_FILE = "scenario.yaml"
RULES_FILE = "rules.yaml"
SITE_FILE = "site.yaml"


class Parameter(StrictModel):
    """`values` for a grid (or a random choice); `range: [low, high]` for a random search."""

    field: str = pydantic.Field(min_length=1)
    values: list[Any] | None = pydantic.Field(default=None, min_length=1)
    range: Pair | None = None
    integer: bool = False  # a range of whole numbers
    log: bool = False  # sample a range uniformly in its logarithm


class SweepFile(StrictModel):
    sweep: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    base_scenario: str  # relative to the sweep file (not `scenario:`, which marks a scenario file)
    replications: int = pydantic.Field(default=5, ge=1, le=1000)
    search: Literal["grid", "random"] = "grid"
    samples: int | None = pydantic.Field(default=None, ge=1, le=100000)  # random search only
    seed: int = pydantic.Field(default=0, ge=0, lt=2**63)  # the random search's own seed
    parameters: list[Parameter] = pydantic.Field(min_length=1)


@dataclass(frozen=True)
class Point:
    """One combination of parameter values and the input files that realise it."""

    id: str
    params: dict[str, Any]
    inputs: dict[str, str]  # file name → text; SCENARIO_FILE refers to the others by name
    scenario: Scenario  # as loaded from those files (validated)


@dataclass(frozen=True)
class Sweep:
    spec: SweepFile
    source: str
    sha256: str
    base: Scenario
    points: list[Point]


def is_rule_field(field: str) -> bool:
    return field.startswith("rules.")


# --- expanding the parameters into points ------------------------------------------------

def expand(spec: SweepFile) -> list[dict[str, Any]]:
    """The points of a sweep, in a stable order: a grid's full product (the last parameter varies
    fastest), or `samples` draws of a random search from its own seeded generator."""
    fields = [p.field for p in spec.parameters]
    if spec.search == "grid":
        return [dict(zip(fields, combo)) for combo in itertools.product(*(p.values for p in spec.parameters))]
    rng = random.Random(spec.seed)
    return [{p.field: _draw(rng, p) for p in spec.parameters} for _ in range(spec.samples or 0)]


def _draw(rng: random.Random, p: Parameter) -> Any:
    if p.values is not None:
        return copy.deepcopy(p.values[rng.randrange(len(p.values))])
    low, high = p.range
    if p.integer and not p.log:
        return rng.randint(math.ceil(low), math.floor(high))
    drawn = math.exp(rng.uniform(math.log(low), math.log(high))) if p.log else rng.uniform(low, high)
    if p.integer:
        return min(max(round(drawn), math.ceil(low)), math.floor(high))
    return min(max(float(f"{drawn:.6g}"), low), high)  # six digits read well; rounding must not leave the range


def _check_parameters(spec: SweepFile, locator: Locator) -> None:
    seen: set[str] = set()
    if spec.search == "random" and spec.samples is None:
        raise locator.error(("search",), "a random search needs samples: how many points to draw")
    if spec.search == "grid" and spec.samples is not None:
        raise locator.error(("samples",), "only a random search takes samples; a grid runs every combination")
    for i, p in enumerate(spec.parameters):
        if p.field in seen:
            raise locator.error(("parameters", i, "field"), f"{p.field} is swept twice")
        seen.add(p.field)
        if (p.values is None) == (p.range is None):
            raise locator.error(("parameters", i), "give either values: [...] or range: [low, high]")
        if p.range is not None:
            if spec.search == "grid":
                raise locator.error(("parameters", i, "range"), "a grid needs values: [...]; ranges are for search: random")
            low, high = p.range
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise locator.error(("parameters", i, "range"), f"need low <= high, got [{low:g}, {high:g}]")
            if p.integer and math.ceil(low) > math.floor(high):
                raise locator.error(("parameters", i, "range"), "holds no whole number")
            if p.log and low <= 0:
                raise locator.error(("parameters", i, "range"), "a log range must be positive")
        elif p.integer or p.log:
            raise locator.error(("parameters", i, "integer" if p.integer else "log"), "applies to a range only")


# --- applying a point to the base files --------------------------------------------------

class _PathError(Exception):
    """A field path that does not lead anywhere in the file."""


def _child(node: Any, part: str, where: str) -> tuple[Any, Any]:
    """The container holding `part` under `node`, and its key there (an index for lists)."""
    if isinstance(node, dict):
        return node, part
    if isinstance(node, list):
        if part.isdigit():
            if int(part) >= len(node):
                raise _PathError(f"{where} has {len(node)} item(s); there is no item {part}")
            return node, int(part)
        ids = [item.get("id") for item in node if isinstance(item, dict)]
        if part not in ids:
            known = ", ".join(str(i) for i in ids if i is not None) or "none have an id: use an index"
            raise _PathError(f"{where} has no item with id {part!r} (ids: {known})")
        return node, ids.index(part)
    raise _PathError(f"{where} is a single value ({node!r}), not a mapping or a list")


def set_field(doc: dict, parts: list[str], value: Any) -> None:
    """Set `doc` at the path; mappings missing on the way are created (the schema judges them)."""
    node: Any = doc
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the file"
        holder, key = _child(node, part, where)
        if depth == len(parts) - 1:
            holder[key] = copy.deepcopy(value)
        else:
            if isinstance(holder, dict) and key not in holder:
                holder[key] = {}
            node = holder[key]


def _relative_file(base: Path, name: str) -> Path | None:
    """A site or rule file named relative to the scenario (reference names give None)."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        return path if path.is_absolute() else base.parent / path
    return None


def point_inputs(base: Scenario, params: dict[str, Any]) -> dict[str, str]:
    """The files of one point: the base scenario with `params` applied, and the site and rule
    files it names copied beside it, so the folder runs anywhere (a Ray node included)."""
    base_path = Path(base.source)
    doc = yaml.safe_load(read_text(base_path))
    rule_overrides = {f: v for f, v in params.items() if is_rule_field(f)}
    for field, value in params.items():
        if not is_rule_field(field):
            set_field(doc, field.split("."), value)
    files: dict[str, str] = {}
    site = _relative_file(base_path, str(doc.get("site", "")))
    if site is not None:
        files[SITE_FILE] = read_text(site)
        doc["site"] = SITE_FILE
    rules_name = str(doc.get("rules", "default"))
    rules_path = default_ruleset_path() if rules_name == "default" else _relative_file(base_path, rules_name)
    if rules_path is not None and (rule_overrides or rules_name != "default"):  # else the loader says what is wrong
        text = read_text(rules_path)
        if rule_overrides:
            text = _override_rules(text, rule_overrides)
        files[RULES_FILE] = text
        doc["rules"] = RULES_FILE
    for i, op in enumerate(doc.get("operations") or []):
        if isinstance(op, dict) and op.get("kind") == "rules-update" and isinstance(op.get("file"), str):
            name = f"rules-update-{i}.yaml"
            path = _relative_file(base_path, op["file"]) or base_path.parent / op["file"]
            if path.is_file():  # a missing one is left for the scenario loader to report
                files[name] = read_text(path)
                op["file"] = name
    files[SCENARIO_FILE] = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120, default_flow_style=None)
    return files


def _override_rules(text: str, overrides: dict[str, Any]) -> str:
    doc = yaml.safe_load(text)
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list):
        raise _PathError("the rule file has no list of rules")
    for field, value in overrides.items():
        _, rule_id, *rest = field.split(".")
        ids = [r.get("id") for r in rules if isinstance(r, dict)]
        if rule_id not in ids:
            raise _PathError(f"rule set {doc.get('ruleset')!r} has no rule {rule_id!r} (rules: {', '.join(map(str, ids))})")
        if not rest:
            raise _PathError(f"name a field of rule {rule_id}, e.g. rules.{rule_id}.params.<name>")
        set_field(rules[ids.index(rule_id)], rest, value)
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120, default_flow_style=None)


def write_inputs(folder: Path, inputs: dict[str, str]) -> Path:
    """Write a point's files into `folder`; returns the scenario file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in inputs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder / SCENARIO_FILE


def _materialise(base: Scenario, params: dict[str, Any]) -> tuple[dict[str, str], Scenario]:
    """The point's files, and the scenario loaded from them (raises _PathError or InputError)."""
    inputs = point_inputs(base, params)
    with tempfile.TemporaryDirectory(prefix="cangtwin-sweep-") as tmp:
        scenario = load_scenario(write_inputs(Path(tmp), inputs))
    return inputs, scenario


# --- loading -------------------------------------------------------------------------------

def load_sweep(path: str | Path) -> Sweep:
    """Load and validate a sweep file and every point it expands to; InputError naming the
    sweep file's line and field for anything wrong, before anything runs."""
    path = Path(path)
    text = read_text(path)
    spec, locator = parse_yaml_located(text, SweepFile, str(path))
    _check_parameters(spec, locator)
    base_path = path.parent / spec.base_scenario
    try:
        base = load_scenario(base_path)
    except InputError as err:
        if err.source == str(base_path) and err.line is None:
            raise locator.error(("base_scenario",), f"{spec.base_scenario!r}: {err.message}") from None
        raise  # the base scenario itself is broken: its own file and line say where
    for i, param in enumerate(spec.parameters):  # each value on its own first, to blame its own line
        for value in param.values or []:
            try:
                _materialise(base, {param.field: value})
            except (_PathError, InputError) as err:
                raise _blame(locator, i, param, value, err) from None
    points: list[Point] = []
    expanded = expand(spec)
    width = max(3, len(str(len(expanded) - 1)))
    for n, params in enumerate(expanded):
        inputs, scenario = _validated(base, params, spec, locator)
        points.append(Point(f"p{n:0{width}d}", params, inputs, scenario))
    return Sweep(spec, str(path), hashlib.sha256(text.encode()).hexdigest(), base, points)


def _validated(base: Scenario, params: dict[str, Any], spec: SweepFile, locator: Locator) -> tuple[dict[str, str], Scenario]:
    """Materialise a point; a failure is blamed on the parameter that fails alone, else on the mix."""
    try:
        return _materialise(base, params)
    except (_PathError, InputError) as err:
        for i, param in enumerate(spec.parameters):
            try:
                _materialise(base, {param.field: params[param.field]})
            except (_PathError, InputError) as alone:
                raise _blame(locator, i, param, params[param.field], alone) from None
        shown = ", ".join(f"{f}={v!r}" for f, v in params.items())
        raise locator.error(("parameters",), f"the combination {shown} is not a valid scenario: {_reason(err)}") from None


def _blame(locator: Locator, index: int, param: Parameter, value: Any, err: Exception) -> InputError:
    if isinstance(err, _PathError):
        return locator.error(("parameters", index, "field"), f"{param.field}: {err}")
    assert isinstance(err, InputError)
    if err.message.startswith("Extra inputs are not permitted"):
        schema = "rule" if is_rule_field(param.field) else "scenario"
        return locator.error(("parameters", index, "field"),
                             f"{param.field}: no such field ({err.field} is not in the {schema} file's schema)")
    where = ("values", param.values.index(value)) if param.values is not None else ("range",)
    return locator.error(("parameters", index) + where, f"{param.field} = {value!r}: {_reason(err)}")


def _reason(err: Exception) -> str:
    """What the scenario or rule loader said, without the temporary file it was said about."""
    if isinstance(err, InputError):
        return f"{err.field}: {err.message}" if err.field else err.message
    return str(err)
