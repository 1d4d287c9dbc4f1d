"""JUnit XML for CI: one testsuite per scenario, one testcase per replication × criterion.

A FAILURE criterion is a <failure>; a crashed replication is one testcase with an <error>
carrying its traceback and the command that reruns it alone. ElementTree does the escaping.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from cangtwin.scenarios.criteria import Status
from cangtwin.scenarios.result import all_criteria
from cangtwin.scenarios.suite import ERROR

# Characters XML 1.0 cannot carry at all (ElementTree escapes markup but writes these as they are).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _with_unit(value: object, unit: str) -> str:
    if value is None:
        return "never"
    return f"{value} {unit}" if unit else str(value)


def criterion_values(c: dict) -> str:
    unit = c.get("unit", "")
    return (f"expected {_with_unit(c['expected'], unit)}, acceptable {_with_unit(c['acceptable'], unit)}, "
            f"actual {_with_unit(c['actual'], unit)}")


def criterion_message(c: dict) -> str:
    return f"{c['status']}: {criterion_values(c)}"


def junit_tree(suite: dict, out: Path) -> ET.ElementTree:
    """`out` is the suite folder: crash logs are read from it into the <error> bodies."""
    root = ET.Element("testsuites", name="cangtwin")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    wall_total = 0.0
    for scenario in suite["scenarios"]:
        name = scenario["scenario"]
        counts = {"tests": 0, "failures": 0, "errors": 0}
        testsuite = ET.SubElement(root, "testsuite", name=name)
        ET.SubElement(ET.SubElement(testsuite, "properties"), "property", name="source", value=scenario["source"])
        wall = 0.0
        for rep in scenario["replications"]:
            where = f"rep {rep['index']}, seed {rep['seed']}"
            rep_wall = (rep["wall"] or {}).get("run_s") or 0.0
            wall += rep_wall
            if rep["status"] == ERROR:
                case = ET.SubElement(testsuite, "testcase", classname=f"cangtwin.{name}",
                                     name=f"replication [{where}]", time="0")
                crash = out / rep["error"]["traceback"]
                body = crash.read_text(errors="replace") if crash.is_file() else rep["error"]["message"]
                error = ET.SubElement(case, "error", type="crash",
                                      message=_xml(f"{rep['error']['message']} (rerun alone: {rep['error']['rerun']})"))
                error.text = _xml(body)
                counts["tests"] += 1
                counts["errors"] += 1
                continue
            criteria = all_criteria(rep)
            share = rep_wall / len(criteria) if criteria else 0.0
            for c in criteria:
                case = ET.SubElement(testsuite, "testcase", classname=f"cangtwin.{name}",
                                     name=f"{c['name']} [{where}]", time=f"{share:.3f}")
                message = criterion_message(c)
                if c["status"] == Status.FAILURE:
                    ET.SubElement(case, "failure", type="criterion", message=message).text = (
                        f"{message}\nresults: {rep['folder']}/result.json")
                    counts["failures"] += 1
                else:
                    ET.SubElement(case, "system-out").text = message
                counts["tests"] += 1
        testsuite.set("time", f"{wall:.3f}")
        wall_total += wall
        for key, value in counts.items():
            testsuite.set(key, str(value))
            totals[key] += value
        testsuite.set("skipped", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{wall_total:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(suite: dict, out: Path) -> Path:
    path = out / "junit.xml"
    junit_tree(suite, out).write(path, encoding="utf-8", xml_declaration=True)
    return path
