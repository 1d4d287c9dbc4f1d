"""`cangtwin rules diff`: changes rule by rule and parameter by parameter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cangtwin.platform.rules.diff import Change, diff_rulesets
from cangtwin.platform.rules.ruleset import default_ruleset_path, load_ruleset

CLI = Path(sys.executable).parent / "cangtwin"


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "rules.yaml"
    text = default_ruleset_path().read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_parameter_severity_and_removal_show_up(tmp_path):
    edited = _edited(tmp_path, "max_clock_skew_s: 5.0", "max_clock_skew_s: 2.5")
    text = edited.read_text(encoding="utf-8")
    start = text.index("  - id: outbound-unauthorized")
    end = text.index("  - id: message-integrity")
    edited.write_text(text[:start] + text[end:], encoding="utf-8")
    changes = diff_rulesets(load_ruleset(), load_ruleset(edited))
    assert changes == [
        Change("message-integrity", "params.max_clock_skew_s", 5.0, 2.5),
        Change("outbound-unauthorized", "removed", "outbound-unauthorized", None),
    ]
    assert diff_rulesets(load_ruleset(), load_ruleset()) == []


def test_cli_prints_the_diff_and_refuses_a_broken_file(tmp_path):
    edited = _edited(tmp_path, "realert_after_s: 300", "realert_after_s: 60")
    proc = subprocess.run([str(CLI), "rules", "diff", str(default_ruleset_path()), str(edited)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "params.realert_after_s" in proc.stdout and "300" in proc.stdout
    broken = _edited(tmp_path, "realert_after_s: 300", "realert_after_s: soon")
    proc = subprocess.run([str(CLI), "rules", "diff", str(default_ruleset_path()), str(broken)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    line = next(n for n, l in enumerate(broken.read_text(encoding="utf-8").splitlines(), 1) if "soon" in l)
    assert f"rules.yaml:{line}: rules[1].params.realert_after_s" in proc.stderr
