"""Thing Descriptions (W3C WoT TD 1.1) compiled into strict payload decoders.

A device type's TD is its thing model (物模型): each `events` entry is one wire message kind,
and its `data` schema becomes a msgspec Struct that rejects unknown fields, wrong types and
out-of-range values. Compiling once per device type keeps validation on the 100k msg/s path.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec

_SCALARS: dict[str, type] = {"number": float, "integer": int, "boolean": bool}


class ThingModelError(ValueError):
    """A Thing Description the platform cannot turn into a validator."""


def _field_type(name: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return Literal[tuple(schema["enum"])]
    if kind == "string":
        if schema.get("contentEncoding") == "base64":
            py: Any = bytes  # MessagePack carries binary natively; base64 is the JSON view
        else:
            py = str
    elif kind == "array":
        py = list[_field_type(name, schema.get("items", {}))]
    elif kind in _SCALARS:
        py = _SCALARS[kind]
    else:
        raise ThingModelError(f"field {name!r}: unsupported data schema type {kind!r}")
    bounds = {}
    if kind == "number":  # a JSON number is never NaN or infinite; these bounds refuse both
        bounds = {"ge": -sys.float_info.max, "le": sys.float_info.max}
    if "minimum" in schema:
        bounds["ge"] = schema["minimum"]
    if "maximum" in schema:
        bounds["le"] = schema["maximum"]
    if "maxLength" in schema:
        bounds["max_length"] = schema["maxLength"]
    if "maxItems" in schema:
        bounds["max_length"] = schema["maxItems"]
    return Annotated[py, msgspec.Meta(**bounds)] if bounds else py


def payload_struct(td_title: str, kind: str, data: dict[str, Any]) -> type[msgspec.Struct]:
    """A strict msgspec type for one affordance's schema (event data or action input), so a
    payload with a missing, mistyped or unknown field is refused at decode time."""
    if data.get("type") != "object":
        raise ThingModelError(f"{td_title}: event {kind!r} data must be an object schema")
    required = set(data.get("required", []))
    fields = []
    for name, schema in data.get("properties", {}).items():
        py = _field_type(name, schema)
        fields.append((name, py) if name in required else (name, py | None, None))
    fields.sort(key=lambda f: len(f) == 3)  # required fields first, as dataclasses need
    return msgspec.defstruct(f"{kind}_payload", fields, forbid_unknown_fields=True, frozen=True)


class ThingModel:
    """The message kinds one device type may send, each with its compiled decoder."""

    def __init__(self, td: dict[str, Any]) -> None:
        self.id: str = td.get("id", "")
        self.title: str = td.get("title", "")
        events = td.get("events")
        if not isinstance(events, dict) or not events:
            raise ThingModelError(f"{self.title or self.id}: a device TD must declare its events")
        self.decoders: dict[str, msgspec.msgpack.Decoder] = {
            kind: msgspec.msgpack.Decoder(payload_struct(self.title, kind, spec.get("data", {})))
            for kind, spec in events.items()
        }

    def decode(self, kind: str, payload: bytes) -> msgspec.Struct:
        """Validate a payload of `kind`; raises KeyError for an unknown kind."""
        return self.decoders[kind].decode(payload)
