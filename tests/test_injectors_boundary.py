"""Physical frauds act only on the world or on an agent's behaviour (brief §3 rule 5).

A physical injector may reach the pybullet world and the warehouse's agents, never a device's
output, a link, the platform's state or its messages. Checked three ways on the source of each
physical injector: what it imports, which attributes it touches, and what its `inject_*`
functions are given. The colluding keeper is an agent and passes the same checks for what it
does in the world; its one data edit (marking a release in the edge's local book) is not done by
the module itself but handed to it by the harness as a callable, visible in its signature.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
from pathlib import Path

import pytest

FRAUD = Path(__file__).resolve().parent.parent / "fraud"
PHYSICAL = [
    "outbound", "blind_spot", "substitution", "partial_wheel", "person_on_scale", "lidar_occluder",
    "tag_cloned", "tag_moved", "colluding_keeper", "weighing_hooks", "climate_fault", "lots_moved",
]
ALLOWED_IMPORTS = ("__future__", "typing", "simpy", "mesa", "cangtwin.twin.", "cangtwin.fraud.")
# Attribute names that reach devices, links, or the platform's state and messages.
FORBIDDEN_ATTRIBUTES = {
    "emit", "send", "indicator", "clock_offset_s", "alive", "edge", "cloud", "outbox", "book", "registry",
    "evidence", "ledger", "uplink", "downlink", "device_link", "fleet", "add_outage", "add_spike",
}
FORBIDDEN_PARAMETER_TYPES = ("cangtwin.platform", "cangtwin.devices", "cangtwin.twin.network", "Path", "Link")


def _tree(name: str) -> ast.Module:
    path = FRAUD / f"{name}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("name", PHYSICAL)
def test_physical_injectors_import_only_the_twin(name):
    imported = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    bad = [m for m in imported if not any(m == a.rstrip(".") or m.startswith(a) for a in ALLOWED_IMPORTS)]
    assert bad == [], f"fraud/{name}.py imports {bad}"


@pytest.mark.parametrize("name", PHYSICAL)
def test_physical_injectors_touch_no_device_output_link_or_platform_state(name):
    touched = {node.attr for node in ast.walk(_tree(name)) if isinstance(node, ast.Attribute)}
    assert touched & FORBIDDEN_ATTRIBUTES == set(), f"fraud/{name}.py touches {touched & FORBIDDEN_ATTRIBUTES}"


@pytest.mark.parametrize("name", PHYSICAL)
def test_physical_injectors_are_given_only_the_world_agents_and_plain_values(name):
    module = importlib.import_module(f"cangtwin.fraud.{name}")
    functions = [f for n, f in inspect.getmembers(module, inspect.isfunction)
                 if n.startswith("inject_") and f.__module__ == module.__name__]
    for function in functions:
        for parameter, hint in typing.get_type_hints(function).items():
            shown = typing._type_repr(hint) if not isinstance(hint, type) else f"{hint.__module__}.{hint.__qualname__}"
            assert not any(word in shown for word in FORBIDDEN_PARAMETER_TYPES), (
                f"{module.__name__}.{function.__name__}({parameter}: {shown})"
            )


def test_the_checks_would_catch_a_device_tamperer():
    """The same checks flag a module that acts inside a device (camera.py is device tampering)."""
    tree = _tree("device_faults")
    touched = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert touched & FORBIDDEN_ATTRIBUTES
