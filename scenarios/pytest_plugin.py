"""pytest plugin: scenario files as test items, so a scenario library runs under plain `pytest`.

Enable it with `-p cangtwin.scenarios.pytest_plugin` (or the package's pytest11 entry point)
and name the folders to collect in the ini option `cangtwin_scenarios`. Every scenario file
there (a YAML file with a top-level `scenario:` key, as `cangtwin suite` finds them) becomes
one test that runs one replication with the file's seed and fails with the criteria table
when a criterion fails. Nothing is collected unless `cangtwin_scenarios` is set.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from cangtwin.platform.config_file import InputError
from cangtwin.scenarios.junit import criterion_values
from cangtwin.scenarios.result import all_criteria, passed
from cangtwin.scenarios.spec import load_scenario
from cangtwin.scenarios.suite import is_scenario_file, run_replication


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("cangtwin_scenarios", type="paths", default=[],
                  help="folders whose scenario files (YAML with a top-level `scenario:` key) are collected as tests")
    parser.addini("cangtwin_results", type="string", default="",
                  help="folder for each scenario test's results (default: a fresh temporary folder)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    folders = [Path(p).resolve() for p in parent.config.getini("cangtwin_scenarios")]
    path = file_path.resolve()
    if any(path.is_relative_to(folder) for folder in folders) and is_scenario_file(path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        try:
            scenario = load_scenario(self.path)
        except InputError as err:
            raise self.CollectError(str(err)) from None
        yield ScenarioItem.from_parent(self, name=scenario.spec.scenario, seed=scenario.spec.seed)


class ScenarioFailed(Exception):
    """A criterion failed; carries the result to show its criteria table."""

    def __init__(self, result: dict, folder: Path) -> None:
        super().__init__(result["status"])
        self.result, self.folder = result, folder


class ScenarioCrashed(Exception):
    def __init__(self, traceback: str, folder: Path) -> None:
        super().__init__(traceback)
        self.traceback, self.folder = traceback, folder


class ScenarioItem(pytest.Item):
    def __init__(self, *, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed

    def _results_folder(self) -> Path:
        configured = self.config.getini("cangtwin_results")
        base = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="cangtwin-pytest-"))
        return base / f"{self.name}-s{self.seed}"

    def runtest(self) -> None:
        folder = self._results_folder()
        done = run_replication(str(self.path), self.seed, str(folder))
        if "error" in done:
            raise ScenarioCrashed(done["traceback"], folder)
        if not passed(done["result"]):
            raise ScenarioFailed(done["result"], folder)

    def repr_failure(self, excinfo, style=None) -> str:
        error = excinfo.value
        if isinstance(error, ScenarioFailed):
            return f"{criteria_table(error.result)}\nresults in {error.folder}"
        if isinstance(error, ScenarioCrashed):
            return f"the run crashed (rerun: cangtwin run {self.path} --seed {self.seed})\n{error.traceback}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"scenario {self.name} (seed {self.seed})"


def criteria_table(result: dict) -> str:
    """The criteria as plain text (no colour codes in pytest's report)."""
    table = Table(title=f"{result['provenance']['scenario']} (seed {result['provenance']['seed']}): {result['status']}",
                  title_justify="left")
    for col in ("criterion", "status", "expected / acceptable / actual"):
        table.add_column(col)
    for c in all_criteria(result):
        table.add_row(c["name"], c["status"], criterion_values(c))
    buffer = io.StringIO()
    Console(file=buffer, width=140, color_system=None).print(table)
    return buffer.getvalue()
