"""Injections in scenario files: a bad reference or parameter gets one error naming file, line and field."""

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
    ("- {kind: ownership-transfer, id: o, at: 1m, lots: [B99-01], from_owner: a, to_owner: b}", "lots", "unknown lot 'B99-01'"),
    ("- {kind: ownership-transfer, id: o, at: 1m, lots: [B09-01], from_owner: a, to_owner: a}", "injections", "same party"),
    ("- {kind: ownership-transfer, id: o, at: 1m, lots: [], from_owner: a, to_owner: b}", "lots", "at least 1 item"),
    ("- {kind: climate-fault, id: c, at: 1m, zone: cellar, cause: leak, magnitude: 5, duration: 1m}", "zone", "no zone 'cellar'"),
    ("- {kind: climate-fault, id: c, at: 1m, zone: storage, cause: flood, magnitude: 5, duration: 1m}", "cause", "'hvac-failure' or 'leak'"),
    ("- {kind: climate-fault, id: c, at: 1m, zone: storage, cause: leak, magnitude: 0, duration: 1m}", "magnitude", "greater than 0"),
    ("- {kind: climate-fault, id: c, at: 1m, zone: storage, cause: leak, magnitude: 5, duration: 0}", "duration", "longer than 0 s"),
    ("- {kind: lots-moved, id: m, at: 1m, lots: [B09-01], to_bay: B77}", "to_bay", "unknown bay 'B77'"),
    ("- {kind: lots-moved, id: m, at: 1m, lots: [B09-01], to: [500, 8]}", "to", "outside the building"),
    ("- {kind: lots-moved, id: m, at: 1m, lots: [B09-01]}", "injections", "exactly one destination"),
    ("- {kind: lots-moved, id: m, at: 1m, lots: [B09-01], to_bay: B10, to: [60, 8]}", "injections", "exactly one destination"),
    ("- {kind: price-slide, id: p, at: 1m, commodity: gold, drop: 0.1, over: 10m}", "commodity", "unknown commodity 'gold'"),
    ("- {kind: price-slide, id: p, at: 1m, commodity: copper-cathode, drop: 1.5, over: 10m}", "drop", "less than 1"),
    ("- {kind: price-slide, id: p, at: 20m, commodity: copper-cathode, drop: 0.1, over: 10m}", "at", "beyond the duration"),
])
def test_bad_new_injection_names_file_line_and_field(tmp_path, line, field, message):
    path = tmp_path / "scenario.yaml"
    path.write_text(HEAD + "  " + line + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:7:") and field in text and message in text, text
    assert "\n" not in text


def test_an_expectation_may_name_a_slides_margin_call_label_but_not_an_unknown_one(tmp_path):
    body = HEAD + "  - {kind: price-slide, id: p, at: 1m, commodity: copper-cathode, drop: 0.1, over: 5m}\n"
    good = body + "expectations:\n  - {kind: detect, label: p-margin-call, rule: ltv-band, success_s: 2, acceptable_s: 5}\n"
    path = tmp_path / "s.yaml"
    path.write_text(good, encoding="utf-8")
    load_scenario(path)
    path.write_text(good.replace("p-margin-call", "p-disposal"), encoding="utf-8")
    with pytest.raises(InputError, match=r"s\.yaml:9: .*label.*no injection with id 'p-disposal'"):
        load_scenario(path)


def test_a_move_to_a_bay_of_another_warehouse_is_refused(tmp_path):
    path = tmp_path / "pair.yaml"
    path.write_text(HEAD.replace("site: small", "site: pair")
                    + "  - {kind: lots-moved, id: m, at: 1m, lots: [w1.B09-01], to_bay: w2.B10}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pair\.yaml:7: .*to_bay.*acts at w1 and w2"):
        load_scenario(path)
