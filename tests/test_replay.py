"""Backtesting: a recorded run's inputs, replayed through a fresh platform, with old and new rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cangtwin.platform.rules.ruleset import default_ruleset_path
from cangtwin.scenarios.replay import replay_run, verdicts

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios" / "library"
CLI = Path(sys.executable).parent / "cangtwin"


def _short_substitution(tmp_path: Path) -> Path:
    text = (LIBRARY / "substitution.yaml").read_text(encoding="utf-8")
    text = text.replace("duration: 90m", "duration: 25m").replace("lots: [B09-01, B09-02, B10-01]", "lots: [B09-01]")
    text = "\n".join(line for line in text.splitlines()
                     if "lots: [B09-02]" not in line and "lots: [B10-01]" not in line and "hollow-1" not in line)
    path = tmp_path / "short.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_replay_reproduces_the_run_and_new_rules_change_the_verdict(tmp_path):
    scenario = _short_substitution(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.run([str(CLI), "run", str(scenario), "--record-inputs", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = out / "substitution-s29"
    same, original = replay_run(run_dir, None, tmp_path / "same")
    assert original["detections"]["swap-1"]["rule"] == "substitution-or-hollow"
    assert verdicts(same) == verdicts(original) != set()
    assert same["detections"]["swap-1"]["bank_latency_s"] == original["detections"]["swap-1"]["bank_latency_s"]
    loose = tmp_path / "loose.yaml"  # a bank tries a tolerance so wide that a 40 % deficit passes
    loose.write_text(default_ruleset_path().read_text(encoding="utf-8")
                     .replace("tolerance_rel: 0.005", "tolerance_rel: 0.5"), encoding="utf-8")
    changed, _ = replay_run(run_dir, loose, tmp_path / "loose")
    assert "swap-1" not in changed["detections"] and changed["missed"] == ["swap-1"]


def test_a_run_without_recorded_inputs_is_a_one_line_error(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "result.json").write_text('{"provenance": {}}')
    proc = subprocess.run([str(CLI), "replay", str(folder)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "scenario_file" in proc.stderr
