"""Strict loading of user-edited YAML files (rules, sites, scenarios) with located errors.

Every problem becomes one `InputError` naming the file, the line and the field, so a bank
officer or a QA engineer can fix the file without reading a traceback. PyYAML's node marks
give the lines; pydantic (extra fields forbidden) gives the field paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import pydantic
import yaml

Model = TypeVar("Model", bound=pydantic.BaseModel)


class InputError(Exception):
    """Bad user input, rendered as `file:line: field: message` on one line."""

    def __init__(self, source: str, line: int | None, field: str | None, message: str) -> None:
        self.source, self.line, self.field, self.message = source, line, field, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class StrictModel(pydantic.BaseModel):
    """Base for file schemas: unknown fields are errors, values are not coerced, models are frozen."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)


# YAML has no tuples: fixed-length sequences are accepted as lists; their items stay strict.
Pair = Annotated[tuple[float, float], pydantic.Strict(False)]
Triple = Annotated[tuple[float, float, float], pydantic.Strict(False)]


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _line_map(node: yaml.Node, source: str) -> dict[tuple, int]:
    """Map each key/item path to its 1-based line.

    Refuses what YAML allows but these files must not hold: duplicate keys (YAML keeps the
    last silently), non-scalar keys, and aliases (a recursive or exponentially nested alias
    would hang any consumer).
    """
    lines: dict[tuple, int] = {(): node.start_mark.line + 1}
    visited: set[int] = set()

    def walk(n: yaml.Node, path: tuple) -> None:
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
            if id(n) in visited:
                raise InputError(source, n.start_mark.line + 1, _field_path(path) or None,
                                 "YAML aliases (*name) are not supported here; write the value out")
            visited.add(id(n))
        if isinstance(n, yaml.MappingNode):
            seen = set()
            for key, value in n.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise InputError(source, key.start_mark.line + 1, _field_path(path) or None,
                                     "a key must be a plain name, not a list or a mapping")
                name = key.value
                if name in seen:
                    raise InputError(source, key.start_mark.line + 1, _field_path(path + (name,)), "duplicate key")
                seen.add(name)
                lines[path + (name,)] = key.start_mark.line + 1
                walk(value, path + (name,))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    walk(node, ())
    return lines


def _locate(lines: dict[tuple, int], loc: tuple) -> tuple[tuple, int | None]:
    """Resolve a pydantic error location to the YAML path and line it refers to.

    Parts that are not in the file (the tag of a tagged union) are dropped, except the last,
    which may name a missing or unknown field.
    """
    path: tuple = ()
    for i, part in enumerate(loc):
        if path + (part,) in lines or i == len(loc) - 1:
            path += (part,)
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return path, lines[path[:end]]
    return path, None


class Locator:
    """Turns a field path of a loaded file into an InputError at the right line.

    For checks that span several fields (overlapping bays, unknown references), which the
    schema alone cannot express.
    """

    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source = source
        self.lines = lines

    def error(self, path: tuple, message: str) -> InputError:
        resolved, line = _locate(self.lines, path)
        return InputError(self.source, line, _field_path(resolved) or None, message)


def parse_yaml_located(text: str, model: type[Model], source: str) -> tuple[Model, Locator]:
    """Validate YAML text against `model`; raise InputError located in `source`."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character the reader refuses
        line = text.count("\n", 0, exc.position) + 1
        raise InputError(source, line, None, f"broken YAML: character {chr(exc.character)!r} is not allowed") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError(source, 1, None, "the file is empty")
        locator = Locator(source, _line_map(node, source))
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(source, line, None, f"broken YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(source, None, None, f"broken YAML: {exc}") from None
    finally:
        loader.dispose()
    try:
        return model.model_validate(data), locator
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        more = exc.error_count() - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        message = first["msg"].removeprefix("Value error, ")
        names_a_field = first["type"] in ("missing", "extra_forbidden")
        if not names_a_field and "input" in first and not isinstance(first["input"], (dict, list)):
            message += f", got {first['input']!r}"
        loc = tuple(first["loc"])
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc += (first["ctx"]["discriminator"].strip("'"),)  # blame the tag field itself
        elif not names_a_field and loc not in locator.lines and loc[:-1] in locator.lines:
            loc = loc[:-1]  # a check on a whole item (the last part is a union tag): blame the item
        raise locator.error(loc, message + suffix) from None


def parse_yaml(text: str, model: type[Model], source: str) -> Model:
    return parse_yaml_located(text, model, source)[0]


def read_text(path: str | Path) -> str:
    """Read a user file; a missing or unreadable file is an InputError too."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), None, None, "file not found") from None
    except IsADirectoryError:
        raise InputError(str(path), None, None, "is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), None, None, f"cannot read: {exc}") from None


def load_yaml(path: str | Path, model: type[Model]) -> Model:
    """Read and validate a YAML file."""
    return parse_yaml(read_text(path), model, str(path))
