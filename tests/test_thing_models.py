"""Device Thing Descriptions: valid W3C TD 1.1, secured, with units and MQTT forms, and their
compiled payload decoders accept exactly what the TD allows.

The TD is the contract with third-party platforms (brief §2), so it is checked against the
W3C schema itself, and the decoders the platform compiles from it are checked against the TD.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.devices.thing_descriptions import TD_DIR, thing_descriptions
from cangtwin.platform.live import topics
from cangtwin.platform.live.edge_node import EdgeNode
from cangtwin.platform.thing_model import ThingModel, ThingModelError
from cangtwin.scenarios.live.devices import ActionRefused, DeviceActions

REPO = Path(__file__).resolve().parents[1]
TDS = thing_descriptions()
MODELS = {name: ThingModel(td) for name, td in TDS.items()}
EVENTS = sorted((name, kind) for name, td in TDS.items() for kind in td["events"])
encode = msgspec.msgpack.encode


def schema_path() -> Path:
    configured = os.environ.get("CANGTWIN_TD_SCHEMA")
    return Path(configured) if configured else REPO.parent / "shared" / "standards" / "wot-td-1.1-json-schema.json"


@pytest.fixture(scope="module")
def td_validator() -> jsonschema.Draft7Validator:
    path = schema_path()
    if not path.is_file():
        message = f"W3C TD 1.1 JSON Schema not found at {path} (set CANGTWIN_TD_SCHEMA to its path)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_every_device_type_in_td_dir_is_loaded() -> None:
    assert sorted(TDS) == sorted(p.stem for p in TD_DIR.glob("*.json")) and TDS


@pytest.mark.parametrize("name", sorted(TDS))
def test_td_is_valid_against_the_w3c_schema(td_validator: jsonschema.Draft7Validator, name: str) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in td_validator.iter_errors(TDS[name])]
    assert not errors, f"{name}.json: " + "; ".join(errors)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda td: td.pop("security"), id="no-security"),
        pytest.param(lambda td: td.pop("title"), id="no-title"),
        pytest.param(lambda td: td["events"]["heartbeat"].update(forms="mqtt://x"), id="forms-not-a-list"),
        pytest.param(lambda td: td["events"]["heartbeat"]["forms"][0].pop("href"), id="form-without-href"),
    ],
)
def test_the_schema_check_catches_a_broken_td(td_validator: jsonschema.Draft7Validator, damage) -> None:
    """The schema test above can fail: a damaged copy of a real TD does not validate."""
    td = copy.deepcopy(TDS["weighbridge"])
    damage(td)
    assert not td_validator.is_valid(td)


@pytest.mark.parametrize("name", sorted(TDS))
def test_td_requires_a_per_device_key(name: str) -> None:
    td = TDS[name]
    security = [td["security"]] if isinstance(td["security"], str) else td["security"]
    assert security
    schemes = {sc: definition["scheme"] for sc, definition in td["securityDefinitions"].items()}
    assert [schemes[sc] for sc in security] == ["psk"] * len(security)
    assert "nosec" not in schemes.values()


def numeric_fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every number/integer data schema inside `schema`, with a readable path."""
    if schema.get("type") in ("number", "integer"):
        yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from numeric_fields(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from numeric_fields(schema["items"], f"{path}[]")


@pytest.mark.parametrize("name", sorted(TDS))
def test_every_numeric_field_has_a_unit(name: str) -> None:
    td = TDS[name]
    found = [f for kind, event in td["events"].items() for f in numeric_fields(event.get("data", {}), f"events.{kind}")]
    found += [f for prop, schema in td.get("properties", {}).items() for f in numeric_fields(schema, f"properties.{prop}")]
    assert found, "every device reports at least one number"
    assert [path for path, schema in found if not schema.get("unit")] == []


@pytest.mark.parametrize(("name", "kind"), EVENTS)
def test_every_event_has_an_mqtt_form(name: str, kind: str) -> None:
    td = TDS[name]
    forms = td["events"][kind]["forms"]
    mqtt = [
        f for f in forms
        if f.get("href") and f.get("mqv:qos") in ("0", "1", "2")
        and (f["href"].startswith("mqtt://") or td.get("base", "").startswith("mqtt://"))
    ]
    assert mqtt, f"{name}: event {kind} has no MQTT form with an href and mqv:qos"


ACTIONS = sorted((name, action) for name, td in TDS.items() for action in td.get("actions", {}))


@pytest.mark.parametrize(("name", "action"), ACTIONS)
def test_every_action_has_one_msgpack_mqtt_form_at_its_command_topic(name: str, action: str) -> None:
    [form] = TDS[name]["actions"][action]["forms"]
    assert form["contentType"] == "application/msgpack" and form["op"] == ["invokeaction"]
    assert form["href"].format(siteId="s", deviceId="d") == topics.device_command("s", "d", action)


@given(reason=st.text(max_size=64))
@settings(max_examples=50, deadline=None)
def test_what_the_live_edge_publishes_is_what_each_action_input_allows(reason: str) -> None:
    """The live edge's own encoder (EdgeNode._send_command) against the device side's TD decoders:
    one wire for commands, the TD's. A stand-in replaces only the edge's MQTT link."""
    assert [a for _, a in ACTIONS] == ["capture_evidence", "scan"]
    sent: list[tuple[str, bytes]] = []
    edge = type("Edge", (), {"site": "small", "device_link": type("Link", (), {
        "publish": staticmethod(lambda topic, data: sent.append((topic, data)))})()})()
    actions = DeviceActions(TDS)
    for name, action in ACTIONS:
        EdgeNode._send_command(edge, "dev-1", action, {"reason": reason})
        topic, data = sent.pop()
        assert topics.parse(topic) == ("small", f"command:{action}", "dev-1")
        assert actions.decode("dev-1", name, action, data) == {"reason": reason}
        with pytest.raises(ActionRefused, match=f"dev-1: action {action}: .*unknown field `action`"):
            actions.decode("dev-1", name, action, encode({"action": action, "reason": reason}))


def test_an_action_form_that_is_not_msgpack_is_refused_by_the_device_side() -> None:
    td = copy.deepcopy(TDS["camera"])
    td["actions"]["capture_evidence"]["forms"][0]["contentType"] = "application/json"
    with pytest.raises(ValueError, match="camera: action capture_evidence: forms must carry application/msgpack, "
                                         "not application/json"):
        DeviceActions({"camera": td})


@pytest.mark.parametrize("name", sorted(TDS))
def test_every_td_compiles_into_one_decoder_per_event(name: str) -> None:
    model = MODELS[name]
    assert sorted(model.decoders) == sorted(TDS[name]["events"])
    assert model.id == TDS[name]["id"] and model.title == TDS[name]["title"]


def value_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that a field with this data schema may take."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(value_for(schema["items"]), max_size=min(schema.get("maxItems", 4), 4))
    size = min(schema.get("maxLength", 32), 32)
    return st.binary(max_size=size) if schema.get("contentEncoding") == "base64" else st.text(max_size=size)


def data_schema(name: str, kind: str) -> dict[str, Any]:
    return TDS[name]["events"][kind]["data"]


@st.composite
def valid_payloads(draw: st.DrawFn, name: str, kind: str) -> dict[str, Any]:
    data = data_schema(name, kind)
    required = set(data.get("required", []))
    chosen = [f for f in data["properties"] if f in required or draw(st.booleans())]
    return {field: draw(value_for(data["properties"][field])) for field in chosen}


@settings(max_examples=200)
@given(data=st.data(), event=st.sampled_from(EVENTS))
def test_payloads_of_the_right_shape_decode_unchanged(data: st.DataObject, event: tuple[str, str]) -> None:
    payload = data.draw(valid_payloads(*event))
    decoded = MODELS[event[0]].decode(event[1], encode(payload))
    assert msgspec.structs.asdict(decoded) == {f: payload.get(f) for f in data_schema(*event)["properties"]}


def wrong_values(schema: dict[str, Any]) -> list[Any]:
    """Values of the wrong MessagePack type for a field (None is left out: optional fields take it)."""
    if "enum" in schema:
        return [1, True, "not-" + str(schema["enum"][0])]
    return {
        "number": ["1.5", True, [1.0]],
        "integer": ["1", 1.5, True],
        "boolean": [1, "true"],
        "array": ["x", {"a": 1}],
        "string": [b"bytes", 1, ["x"]] if schema.get("contentEncoding") != "base64" else ["dGV4dA==", 1],
    }[schema["type"]]


@settings(max_examples=200)
@given(data=st.data(), event=st.sampled_from(EVENTS))
def test_a_field_of_the_wrong_type_is_rejected(data: st.DataObject, event: tuple[str, str]) -> None:
    payload = data.draw(valid_payloads(*event))
    properties = data_schema(*event)["properties"]
    field = data.draw(st.sampled_from(sorted(properties)))
    payload[field] = data.draw(st.sampled_from(wrong_values(properties[field])))
    with pytest.raises(msgspec.ValidationError, match=field):
        MODELS[event[0]].decode(event[1], encode(payload))


@settings(max_examples=200)
@given(data=st.data(), event=st.sampled_from(EVENTS), extra=st.text(min_size=1, max_size=12))
def test_an_unknown_field_is_rejected(data: st.DataObject, event: tuple[str, str], extra: str) -> None:
    payload = data.draw(valid_payloads(*event))
    properties = data_schema(*event)["properties"]
    if extra in properties:
        extra += "_x"
    payload[extra] = 0
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        MODELS[event[0]].decode(event[1], encode(payload))


@settings(max_examples=100)
@given(data=st.data(), event=st.sampled_from(EVENTS))
def test_a_missing_required_field_is_rejected(data: st.DataObject, event: tuple[str, str]) -> None:
    payload = data.draw(valid_payloads(*event))
    missing = data.draw(st.sampled_from(sorted(data_schema(*event)["required"])))
    del payload[missing]
    with pytest.raises(msgspec.ValidationError, match=f"missing required field `{missing}`"):
        MODELS[event[0]].decode(event[1], encode(payload))


def out_of_range_cases() -> Iterator[Any]:
    """One case per bound in any TD: just past the minimum, the maximum or the length limit."""
    for name, kind in EVENTS:
        for field, schema in data_schema(name, kind)["properties"].items():
            step = 1 if schema["type"] == "integer" else max(1e-9, abs(schema.get("maximum", 1)) * 1e-9)
            if "minimum" in schema:
                yield pytest.param(name, kind, field, schema["minimum"] - step, id=f"{name}.{kind}.{field}<min")
            if "maximum" in schema:
                yield pytest.param(name, kind, field, schema["maximum"] + step, id=f"{name}.{kind}.{field}>max")
            if "maxLength" in schema:
                too_long = schema["maxLength"] + 1
                value = bytes(too_long) if schema.get("contentEncoding") == "base64" else "x" * too_long
                yield pytest.param(name, kind, field, value, id=f"{name}.{kind}.{field}>maxLength")


@pytest.mark.parametrize(("name", "kind", "field", "value"), list(out_of_range_cases()))
def test_a_value_out_of_range_is_rejected(name: str, kind: str, field: str, value: Any) -> None:
    payload = minimal_payload(name, kind)
    payload[field] = value
    with pytest.raises(msgspec.ValidationError, match=field):
        MODELS[name].decode(kind, encode(payload))


def minimal_payload(name: str, kind: str) -> dict[str, Any]:
    """A fixed valid payload: the lowest allowed value of each required field."""
    data = data_schema(name, kind)
    low = {"number": 0.0, "integer": 0, "boolean": False, "array": []}
    payload = {}
    for field in data["required"]:
        schema = data["properties"][field]
        if "enum" in schema:
            payload[field] = schema["enum"][0]
        elif schema["type"] == "string":
            payload[field] = b"" if schema.get("contentEncoding") == "base64" else ""
        else:
            payload[field] = max(low[schema["type"]], schema.get("minimum", low[schema["type"]]))
    MODELS[name].decode(kind, encode(payload))  # the base case is valid, so a rejection is the bound's
    return payload


@pytest.mark.parametrize("name", sorted(TDS))
def test_an_unknown_kind_is_a_key_error(name: str) -> None:
    with pytest.raises(KeyError):
        MODELS[name].decode("teleport", encode({}))


def non_finite_cases() -> Iterator[Any]:
    """Each number field with NaN, +inf and -inf."""
    for name, kind in EVENTS:
        for field, schema in data_schema(name, kind)["properties"].items():
            if schema["type"] != "number":
                continue
            for value in (math.nan, math.inf, -math.inf):
                yield pytest.param(name, kind, field, value, id=f"{name}.{kind}.{field}={value}")


@pytest.mark.parametrize(("name", "kind", "field", "value"), list(non_finite_cases()))
def test_a_number_that_is_not_finite_is_rejected(name: str, kind: str, field: str, value: float) -> None:
    """A TD number is a JSON number, and JSON has no NaN or infinity."""
    payload = minimal_payload(name, kind)
    payload[field] = value
    with pytest.raises(msgspec.ValidationError, match=field):
        MODELS[name].decode(kind, encode(payload))


@pytest.mark.parametrize(
    ("td", "message"),
    [
        pytest.param({"title": "Empty"}, "must declare its events", id="no-events"),
        pytest.param({"title": "T", "events": {"e": {"data": {"type": "number"}}}}, "object schema", id="non-object-data"),
        pytest.param(
            {"title": "T", "events": {"e": {"data": {"type": "object", "properties": {"f": {"type": "object"}}}}}},
            "unsupported data schema type",
            id="nested-object",
        ),
    ],
)
def test_a_td_the_platform_cannot_enforce_is_refused(td: dict[str, Any], message: str) -> None:
    with pytest.raises(ThingModelError, match=message):
        ThingModel(td)
