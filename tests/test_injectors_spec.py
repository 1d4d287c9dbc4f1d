"""The new injections in scenario files: a bad reference gets one error naming file, line and field."""

from __future__ import annotations

import pytest

from cangtwin.platform.config_file import InputError
from cangtwin.scenarios.spec import load_scenario

HEAD = """scenario: t
site: small
seed: 1
start: "2026-03-02T09:00"
duration: 10m
injections:
"""


@pytest.mark.parametrize("line, field, message", [
    ("- {kind: partial-wheel, id: w, at: 1m, weighbridge: WB9, lots: [B09-01], overhang_m: 1}", "weighbridge", "no weighbridge 'WB9'"),
    ("- {kind: partial-wheel, id: w, at: 1m, weighbridge: WB1, lots: [B99-01], overhang_m: 1}", "lots", "unknown lot 'B99-01'"),
    ("- {kind: partial-wheel, id: w, at: 1m, weighbridge: WB1, lots: [B09-01], overhang_m: 9}", "overhang_m", "less than or equal to 6"),
    ("- {kind: person-on-scale, id: p, at: 1m, weighbridge: WB2}", "weighbridge", "no weighbridge 'WB2'"),
    ("- {kind: person-on-scale, id: p, at: 1m, weighbridge: WB1, mass_kg: -5}", "mass_kg", "greater than 0"),
    ("- {kind: tag-cloned, id: c, at: 1m, leaves: B09-01, clone_of: B77-01}", "clone_of", "unknown lot 'B77-01'"),
    ("- {kind: tag-moved, id: m, at: 1m, lot: B88-01, swap_with: B09-01}", "lot", "unknown lot 'B88-01'"),
    ("- {kind: lidar-occluded, id: o, at: 1m, lidar: cam-gate}", "lidar", "no LiDAR 'cam-gate'"),
    ("- {kind: colluding-keeper, id: k, at: 1m, lots: [B09-01], cover_camera: lidar-1}", "cover_camera", "no camera 'lidar-1'"),
    ("- {kind: link-spikes, id: s, at: 1m, duration: 1m, links: [wifi]}", "links", "'devices', 'uplink' or 'downlink'"),
    ("- {kind: edge-db-edit, id: e, at: 20m, down_for: 1m}", "at", "beyond the duration"),
    ("- {kind: ledger-edit, id: l, at: 1m, entry: -1}", "entry", "greater than or equal to 0"),
])
def test_bad_new_injection_names_file_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "scenario.yaml"
    path.write_text(HEAD + "  " + line + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:7:") and field in text and message in text, text
    assert "\n" not in text
