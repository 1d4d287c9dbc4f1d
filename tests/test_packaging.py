"""Layout and packaging: every module ships, data files ship, and stdlib `platform` survives."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["platform", "twin", "devices", "fraud", "scenarios", "dash_app"]
FORBIDDEN_FOR_PLATFORM = ("twin", "devices", "fraud", "scenarios")


def _modules():
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield path, "cangtwin." + ".".join(parts)


def test_top_level_folders_have_no_init():
    for folder in PACKAGES:
        assert not (REPO / folder / "__init__.py").exists(), f"{folder}/__init__.py would shadow or break the namespace"


@pytest.mark.parametrize("path,name", list(_modules()), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_every_module_is_installed(path: Path, name: str):
    """Imported from wherever the package is installed, each module matches the source file."""
    module = importlib.import_module(name)
    installed = Path(module.__file__)
    assert installed.name == path.name
    assert installed.read_bytes() == path.read_bytes(), f"{name} is stale or missing in the installed package"


def test_data_files_are_installed():
    import cangtwin.devices.thing_descriptions as tds
    import cangtwin.platform.rules.ruleset as ruleset
    import cangtwin.twin.site as site

    assert sorted(tds.thing_descriptions()) == sorted(p.stem for p in (REPO / "devices" / "td").glob("*.json"))
    assert ruleset.default_ruleset_path().read_bytes() == (REPO / "platform" / "rules" / "default.yaml").read_bytes()
    assert site.reference_site_path("small").read_bytes() == (REPO / "twin" / "sites" / "small.yaml").read_bytes()


def test_stdlib_platform_works_from_repo_root():
    for env_path in (None, str(REPO)):
        env = {"PATH": "/usr/bin:/bin"}
        if env_path:
            env["PYTHONPATH"] = env_path
        out = subprocess.run(
            [sys.executable, "-c", "import platform, numpy; print(platform.system(), platform.__file__)"],
            cwd=REPO, env=env, capture_output=True, text=True, check=True,
        ).stdout
        system, where = out.split()
        assert system == "Linux"
        assert not where.startswith(str(REPO)), "the repository's platform/ shadowed the standard library"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: use absolute cangtwin.* imports")
            found.append((node.lineno, node.module))
    return found


def test_platform_never_imports_the_twin_side():
    """The platform never sees ground truth: no import of twin, devices, fraud or scenarios."""
    offenders = []
    for path in sorted((REPO / "platform").rglob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "cangtwin" and len(parts) > 1 and parts[1] in FORBIDDEN_FOR_PLATFORM:
                offenders.append(f"{path.relative_to(REPO)}:{line}: {module}")
            if parts[0] in FORBIDDEN_FOR_PLATFORM:
                offenders.append(f"{path.relative_to(REPO)}:{line}: {module}")
    assert offenders == []


def test_platform_modules_load_nothing_from_the_twin_side():
    """The same boundary at run time: importing all of platform pulls in none of the rest."""
    names = [name for _, name in _modules() if name.startswith("cangtwin.platform")]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
        f"[['cangtwin', p] for p in {list(FORBIDDEN_FOR_PLATFORM)!r}])\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
