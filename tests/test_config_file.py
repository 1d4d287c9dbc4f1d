"""Strict YAML loading: every error names the file, the line and the field, and nothing else escapes.

Unit cases pin where an error is placed (nested maps and lists, missing and unknown fields,
tagged unions); the fuzz checks the contract that a bad file is an InputError, never a crash.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, Literal, Union

import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cangtwin.platform.config_file import InputError, StrictModel, load_yaml, parse_yaml, read_text
from cangtwin.scenarios.spec import ScenarioFile

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "library" / "demo-outbound.yaml"


class Inner(StrictModel):
    x: int
    tags: list[str] = []


class Cat(StrictModel):
    kind: Literal["cat"]
    lives: int


class Dog(StrictModel):
    kind: Literal["dog"]
    name: str


class Doc(StrictModel):
    name: str
    inner: Inner | None = None
    items: list[Inner] = []
    table: dict[str, Inner] = {}
    pets: list[Annotated[Union[Cat, Dog], pydantic.Field(discriminator="kind")]] = []


def error(text: str) -> InputError:
    with pytest.raises(InputError) as caught:
        parse_yaml(textwrap.dedent(text), Doc, "doc.yaml")
    return caught.value


def test_a_good_document_loads() -> None:
    doc = parse_yaml("name: a\ninner: {x: 1, tags: [p]}\npets:\n  - {kind: dog, name: rex}\n", Doc, "doc.yaml")
    assert doc.inner == Inner(x=1, tags=["p"]) and doc.pets == [Dog(kind="dog", name="rex")]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        pytest.param("name: a\ninner:\n  x: one\n", 3, "inner.x", "valid integer", id="nested-map"),
        pytest.param("name: a\nitems:\n  - x: 1\n  - x: 2\n    tags: [a, 7]\n", 5, "items[1].tags[1]", "valid string",
                     id="list-in-map-in-list"),
        pytest.param("name: a\nitems:\n  - x: 1\n  -\n    x: 2.5\n", 5, "items[1].x", "valid integer", id="block-item"),
        pytest.param("name: a\ntable:\n  k1: {x: 1}\n  k2:\n    x: [1]\n", 5, "table.k2.x", "valid integer",
                     id="map-of-models"),
        pytest.param("name: 7\n", 1, "name", "valid string", id="top-level"),
        pytest.param("name: a\ninner: {x: '1'}\n", 2, "inner.x", "valid integer", id="no-coercion"),
    ],
)
def test_a_wrong_value_is_placed_at_its_line_and_path(text: str, line: int, field: str, message: str) -> None:
    err = error(text)
    assert (err.source, err.line, err.field) == ("doc.yaml", line, field)
    assert message in err.message


def test_a_missing_field_names_the_field_at_the_line_of_its_parent() -> None:
    """The last part of the path is not in the file, yet it is the field the user must add."""
    err = error("name: a\nitems:\n  - x: 1\n  - tags: [a]\n")
    assert (err.line, err.field, err.message) == (4, "items[1].x", "Field required")


def test_a_missing_top_level_field_is_placed_where_the_document_starts() -> None:
    err = error("\n\ninner: {x: 1}\n")
    assert (err.line, err.field, err.message) == (3, "name", "Field required")


def test_an_unknown_field_is_placed_at_its_own_line() -> None:
    err = error("name: a\ninner:\n  x: 1\n  colour: red\n")
    assert (err.line, err.field, err.message) == (4, "inner.colour", "Extra inputs are not permitted")


def test_a_tagged_union_error_drops_the_tag_from_the_path() -> None:
    """pydantic reports pets.1.dog.name; the user's file has no `dog` key."""
    err = error("name: a\npets:\n  - {kind: cat, lives: 9}\n  - kind: dog\n    name: 5\n")
    assert (err.line, err.field) == (5, "pets[1].name")


def test_a_missing_field_of_a_union_member_is_placed_at_its_item() -> None:
    err = error("name: a\npets:\n  - kind: cat\n")
    assert (err.line, err.field, err.message) == (3, "pets[0].lives", "Field required")


def test_an_unknown_tag_is_placed_at_the_kind_line() -> None:
    err = error("name: a\npets:\n  - name: tweety\n    kind: bird\n")
    assert (err.line, err.field) == (4, "pets[0].kind")


def test_further_errors_are_counted() -> None:
    err = error("name: 1\ninner: {x: a}\nitems: 3\n")
    assert (err.line, err.field) == (1, "name")
    assert err.message.endswith("(and 2 more errors)")


def test_the_offending_value_is_quoted() -> None:
    assert error("name: a\ninner: {x: oops}\n").message.endswith(", got 'oops'")


def test_a_duplicate_key_is_placed_at_its_second_occurrence() -> None:
    """YAML silently keeps the last of two equal keys; a file that says two things is refused."""
    err = error("name: a\ninner:\n  x: 1\n  tags: []\n  x: 2\n")
    assert (err.line, err.field, err.message) == (5, "inner.x", "duplicate key")


def test_broken_yaml_is_placed_at_the_problem() -> None:
    err = error("name: a\ninner: {x: 1\nitems: []\n")
    assert err.line == 3 and err.field is None and err.message.startswith("broken YAML")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_an_empty_file_says_so(text: str) -> None:
    err = error(text)
    assert (err.line, err.message) == (1, "the file is empty")


def test_a_document_that_is_not_a_mapping_is_an_input_error() -> None:
    err = error("- name: a\n")
    assert err.line == 1 and "valid dictionary" in err.message


@pytest.mark.parametrize(
    ("error_", "text"),
    [
        (InputError("f.yaml", 3, "a.b", "bad"), "f.yaml:3: a.b: bad"),
        (InputError("f.yaml", None, None, "file not found"), "f.yaml: file not found"),
        (InputError("f.yaml", 1, None, "the file is empty"), "f.yaml:1: the file is empty"),
    ],
)
def test_input_error_renders_file_line_field_message(error_: InputError, text: str) -> None:
    assert str(error_) == text


def test_read_text_turns_file_problems_into_input_errors(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    cases = {tmp_path / "absent.yaml": "file not found", tmp_path: "is a directory", tmp_path / "latin1.yaml": "cannot read"}
    for path, message in cases.items():
        with pytest.raises(InputError) as caught:
            read_text(path)
        assert (caught.value.source, caught.value.line) == (str(path), None)
        assert message in caught.value.message


def test_load_yaml_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text("name: a\nextra: 1\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_yaml(path, Doc)
    assert str(caught.value) == f"{path}:2: extra: Extra inputs are not permitted"


def outcome(text: str) -> str:
    """Load as a scenario; any exception other than InputError propagates and fails the test."""
    try:
        parse_yaml(text, ScenarioFile, "x.yaml")
    except InputError as err:
        assert str(err).startswith("x.yaml") and "\n" not in str(err)
        return "error"
    return "model"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a\x01b\n", id="control-character"),
        pytest.param("scenario: x\nsite: \x00\n", id="nul"),
    ],
)
def test_a_control_character_is_an_input_error(text: str) -> None:
    assert outcome(text) == "error"


@pytest.mark.parametrize("text", ["{[1]: 2}\n", "? [a, b]\n: 1\n", "? {k: v}\n: 1\n"])
def test_a_collection_used_as_a_key_is_an_input_error(text: str) -> None:
    assert outcome(text) == "error"


def test_a_recursive_alias_is_an_input_error() -> None:
    assert outcome("scenario: &a [*a]\n") == "error"


@pytest.mark.timeout(3)
def test_nested_aliases_do_not_hang_the_loader() -> None:
    """A "billion laughs" file: each line lists the previous anchor ten times."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert outcome("\n".join(lines) + "\n") == "error"


YAMLISH = st.text(
    alphabet=st.sampled_from(list("abcdefghijk-_0123456789 :,[]{}&*!?|>'\"#%@`\n\t.\\") + ["\x00", "\x1b", "é", "钢"]),
    max_size=80,
)
@example("a\x01b").via("control character")
@example("{[1]: 2}").via("collection as a key")
@example("scenario: &a [*a]").via("recursive alias")
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=80), YAMLISH))
def test_random_text_is_a_model_or_an_input_error(text: str) -> None:
    assert outcome(text) in ("model", "error")


@st.composite
def mutated_demo(draw: st.DrawFn) -> str:
    """The demo scenario with a few edits: typed characters, deleted spans, moved or doubled lines."""
    text = DEMO.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "duplicate-line", "swap-lines"]))
        if edit == "insert":
            text = text[:at] + draw(st.one_of(YAMLISH, st.text(max_size=6))) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=30)) :]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            j = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            if edit == "duplicate-line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


@example(DEMO.read_text(encoding="utf-8").replace("loans:", "loans:\x07")).via("control character")
@example(DEMO.read_text(encoding="utf-8").replace("{id: LN", "{[id]: LN")).via("collection as a key")
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=mutated_demo())
def test_a_mutated_demo_scenario_is_a_model_or_an_input_error(text: str) -> None:
    assert outcome(text) in ("model", "error")


def test_the_unmutated_demo_scenario_is_a_model() -> None:
    """The control for the fuzz above: its starting point loads."""
    assert outcome(DEMO.read_text(encoding="utf-8")) == "model"
