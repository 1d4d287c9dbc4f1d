"""Several warehouses under one cloud in one run (`pair`: two `small`s), and the Qingdao ring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cangtwin.platform.config_file import InputError
from cangtwin.scenarios.result import build_result
from cangtwin.scenarios.run import Run
from cangtwin.scenarios.spec import load_scenario
from cangtwin.twin.site import MultiSite, load_any_site, load_site

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "scenarios" / "library"
CLI = Path(sys.executable).parent / "cangtwin"

# A loan at each warehouse; pledged steel leaves warehouse w2 with no release while w1's uplink
# is down. LiDAR off: the gate rule is what is under test, and it keeps the run cheap.
THEFT = """\
scenario: pair-theft
site: pair
seed: 5
start: "2026-03-02T09:00"
duration: 20m
twin: {lidar_scans: false}
loans:
  - {id: LN-A-001, bank: bank-a, borrower: 江南电缆有限公司, amount_cny: 300000, bays: [w1.B01, w1.B02]}
  - {id: LN-B-001, bank: bank-b, borrower: 华东钢贸有限公司, amount_cny: 300000, bays: [w2.B01, w2.B02]}
injections:
  - {kind: unauthorized-outbound, id: theft-w2, at: 1m, lots: [w2.B01-03, w2.B02-01]}
  - {kind: uplink-outage, id: outage-w1, at: 1m, duration: 4m, warehouse: w1}
expectations:
  - {kind: detect, label: theft-w2, rule: outbound-unauthorized, view: bank, success_s: 2, acceptable_s: 10}
  - {kind: detect, label: outage-w1, rule: edge-offline, view: bank, success_s: 30, acceptable_s: 60}
  - {kind: no-false-alarms}
  - {kind: zero-loss}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def theft(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair-theft")
    run = Run(load_scenario(_write(folder, "pair-theft.yaml", THEFT)), folder)
    outcome = run.execute()
    return run, outcome, build_result(outcome, "n/a")


def test_each_edge_reaches_the_one_cloud(theft):
    run, outcome, _ = theft
    assert [rig.id for rig in run.rigs] == ["w1", "w2"]
    for rig in run.rigs:
        assert rig.edge.accepted > 1000
        head, _ = rig.edge.outbox.head
        assert head > 100 and all(run.cloud.has_record(rig.id, seq) for seq in range(1, head + 1))
        heard = [d for d in rig.fleet if run.cloud.shadows.get(d) and run.cloud.shadows[d].last_seen > run.env.now - 60]
        assert sorted(heard) == sorted(rig.fleet)  # every device of this warehouse, heard lately, in the one cloud
    assert set(run.cloud.context.edge_last_heard) == {"w1", "w2"}
    m = outcome.messages
    assert m["emitted"] == m["edge_accepted"] == sum(rig.edge.accepted for rig in run.rigs)
    assert m["records_lost"] == m["cloud_duplicates"] == m["outbox_evicted"] == 0
    assert run.rigs[1].uplink.stats.dropped_in_outage == run.rigs[1].device_link.stats.lost == 0
    assert run.rigs[0].uplink.stats.dropped_in_outage > 0  # w1's outage was real, and w1 caught up after it


def test_an_outage_at_one_warehouse_is_that_warehouse_s_alone(theft):
    _, _, result = theft
    offline = [a for a in result["alerts"] if a["rule"] == "edge-offline"]
    assert offline and all(list(a["targets"]) == ["edge:w1"] for a in offline), offline
    assert result["detections"]["outage-w1"]["bank_latency_s"] <= 30.0
    assert set(result["explained_by"][offline[0]["id"]]) == {"outage-w1"}
    assert result["false_alarms"] == [] and result["status"] == "SUCCESS"


def test_a_theft_at_the_second_warehouse_is_caught_there_and_attributed_to_it(theft):
    run, _, result = theft
    detection = result["detections"]["theft-w2"]
    assert detection["rule"] == "outbound-unauthorized" and detection["bank_latency_s"] <= 2.0
    [alert] = [a for a in result["alerts"] if a["rule"] == "outbound-unauthorized"]
    assert alert["site"] == "w2" and alert["id"].startswith("w2")
    assert sorted(alert["targets"]) == ["lot:w2.B01-03", "lot:w2.B02-01"]
    assert alert["detail"]["loans"] == ["LN-B-001"]
    assert result["false_alarms"] == [] and result["status"] == "SUCCESS"
    # The goods really left w2, and w1 kept its namesakes.
    assert run.rigs[1].warehouse.lots["w2.B01-03"].location == "gone"
    assert run.rigs[0].warehouse.lots["w1.B01-03"].location == "bay:w1.B01"
    # w2's receipt is its own, registered at w2.
    assert run.cloud.book.receipts["WR-w2-0002"].lots[0].startswith("w2.")
    assert run.registry.registration("REG-WR-w2-0002").site == "w2"


def test_every_name_at_a_warehouse_carries_its_prefix_and_none_collide(theft):
    run, outcome, _ = theft
    w1, w2 = run.rigs
    for rig in run.rigs:
        p = f"{rig.id}."
        assert all(lot.startswith(p) and truth.tag == f"EPC-{lot}" for lot, truth in rig.warehouse.lots.items())
        assert all(device.startswith(p) for device in rig.fleet)
        assert all(bay.id.startswith(p) and bay.zone.startswith(p) for bay in rig.site.spec.bays)
    assert "w1.scale-wb1" in w1.fleet and "w2.scale-wb1" in w2.fleet
    assert not set(w1.warehouse.lots) & set(w2.warehouse.lots) and not set(w1.fleet) & set(w2.fleet)
    assert len(run.cloud.devices) == len(w1.fleet) + len(w2.fleet)
    assert run.cloud.devices.get("w2.cam-gate").site == "w2"
    # Trucks are named per warehouse too; the theft's truck was w2's first.
    arrived = [json.loads(line)["data"] for line in outcome.log.lines if b'"twin.truck-arrived"' in line]
    assert [a["truck"] for a in arrived] == ["w2.T0001"]
    # The two warehouses draw from their own streams: same layout, different goods.
    assert w1.warehouse.lots["w1.B01-01"].mass_kg != w2.warehouse.lots["w2.B01-01"].mass_kg
    with pytest.raises(AttributeError, match="2 warehouses"):
        run.edge


def test_a_one_warehouse_run_keeps_unprefixed_names(tmp_path):
    run = Run(load_scenario(LIBRARY / "duplicate-pledge.yaml"), tmp_path)
    assert "B09-01" in run.warehouse.lots and "scale-wb1" in run.fleet and run.edge.site == "small"


# --- bad files -----------------------------------------------------------------------------------

PAIR_HEAD = """\
site: bad-pair
name: {en: "Bad pair"}
timezone: Asia/Shanghai
warehouses:
"""


@pytest.mark.parametrize("entries, line, field, message", [
    ("  - {id: w1, site: small}\n  - {id: w2, site: tiny}\n", 6, "warehouses[1].site", "'tiny': no such reference site"),
    ("  - {id: w1, site: small}\n  - {id: w1, site: small}\n", 6, "warehouses[1].id", "duplicate warehouse id 'w1'"),
    ("  - {id: w1, site: small}\n  - {id: w.2, site: small}\n", 6, "warehouses[1].id", "should match pattern"),
    ("  - {id: w1, site: small}\n  - {id: w2, site: pair}\n", 6, "warehouses[1].site", "a multi-warehouse site"),
    ("  - {id: w1, site: small}\n", 4, "warehouses", "at least 2 items"),
])
def test_bad_multi_site_files_get_one_located_error(tmp_path, entries, line, field, message):
    path = _write(tmp_path, "bad-pair.yaml", PAIR_HEAD + entries)
    with pytest.raises(InputError) as err:
        load_any_site(path)
    assert (err.value.source, err.value.line, err.value.field) == (str(path), line, field)
    assert message in err.value.message and "\n" not in str(err.value)


def test_a_multi_site_file_is_not_one_warehouse():
    with pytest.raises(InputError, match="a multi-warehouse site"):
        load_site("pair")
    multi = load_any_site("multi")
    assert isinstance(multi, MultiSite) and [m.id for m in multi.members] == [f"m{i:02d}" for i in range(1, 11)]
    assert multi.members[9].spec.devices[0].id.startswith("m10.") and len(multi.union().spec.devices) == 10 * len(
        load_site("medium").spec.devices)


@pytest.mark.parametrize("edit, line, field, message", [
    (("w2.B01-03, w2.B02-01", "B01-03, w2.B02-01"), 11, "injections[0].lots[0]",
     "unknown lot 'B01-03' (lots are named like w1.B01-01)"),
    (("bays: [w2.B01, w2.B02]", "bays: [w2.B01, w3.B02]"), 9, "loans[1].bays[1]", "unknown bay 'w3.B02'"),
    (("injections:\n", "injections:\n  - {kind: edge-crash, id: crash, at: 2m, down_for: 1m}\n"), 11, "injections[0]",
     "edge-crash on a multi-warehouse site needs warehouse: (one of w1, w2)"),
    (("injections:\n", "injections:\n  - {kind: uplink-outage, id: out, at: 2m, duration: 1m, warehouse: w3}\n"), 11,
     "injections[0].warehouse", "unknown warehouse 'w3'"),
    (("w2.B01-03, w2.B02-01", "w2.B01-03, w1.B02-01"), 11, "injections[0].lots[1]",
     "acts at w2 and w1; an operation or injection acts at one warehouse"),
    (("injections:\n", "injections:\n  - {kind: forged-device, id: f, at: 2m, device: cam-9, mode: unknown-id}\n"), 11,
     "injections[0].device", "'cam-9' names no warehouse (prefix it with one of w1, w2)"),
])
def test_bad_references_in_a_multi_site_scenario_are_located(tmp_path, edit, line, field, message):
    old, new = edit
    assert old in THEFT
    path = _write(tmp_path, "bad.yaml", THEFT.replace(old, new))
    with pytest.raises(InputError) as err:
        load_scenario(path)
    assert (err.value.line, err.value.field) == (line, field)
    assert message in err.value.message


def test_a_warehouse_on_a_one_warehouse_site_is_refused(tmp_path):
    text = (LIBRARY / "duplicate-pledge.yaml").read_text(encoding="utf-8").replace(
        "injections:\n", "injections:\n  - {kind: edge-crash, id: crash, at: 2m, down_for: 1m, warehouse: w1}\n")
    with pytest.raises(InputError, match="is one warehouse") as err:
        load_scenario(_write(tmp_path, "single.yaml", text))
    assert err.value.field == "injections[0].warehouse"


@pytest.mark.parametrize("copy, field, message", [
    ("{id: ring-bank-b, bank: bank-a}", "bank", "bank 'bank-a' already holds these goods"),
    ("{id: qingdao, bank: bank-b}", "id", "duplicate injection id 'qingdao'"),
    ("{id: ring-bank-b, bank: bank-b, warehouse: w9}", "warehouse", "unknown warehouse 'w9'"),
    ("{id: ring-bank-b, bank: bank-b, after: 30m}", "after", "beyond the duration"),
])
def test_bad_ring_copies_are_located(tmp_path, copy, field, message):
    text = (LIBRARY / "qingdao-ring.yaml").read_text(encoding="utf-8")
    old = "- {id: ring-bank-b, bank: bank-b}"
    assert old in text
    with pytest.raises(InputError) as err:
        load_scenario(_write(tmp_path, "ring.yaml", text.replace(old, f"- {copy}")))
    assert err.value.field == f"injections[0].copies[0].{field}" and message in err.value.message


# --- the Qingdao ring, and determinism across processes -------------------------------------------

def _run_cli(out: Path, scenario: Path, hashseed: str) -> tuple[bytes, dict]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    proc = subprocess.run([str(CLI), "run", str(scenario), "--out", str(out)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    folder = next(out.iterdir())
    return (folder / "events.jsonl").read_bytes(), json.loads((folder / "result.json").read_text())


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ring")
    return [_run_cli(tmp / seed, LIBRARY / "qingdao-ring.yaml", seed) for seed in ("1", "4242")]


def test_a_multi_site_run_gives_a_byte_identical_log_across_processes(ring):
    (log_a, result_a), (log_b, result_b) = ring
    assert log_a == log_b and len(log_a.splitlines()) > 5000
    assert b'"w1.scale-wb1"' in log_a and b'"w2.scale-wb1"' in log_a
    for result in (result_a, result_b):
        del result["wall"]
    assert result_a == result_b and result_a["provenance"]["site"] == "pair"


def test_the_ring_is_caught_copy_by_copy_within_a_second_of_each_registration(ring):
    _, result = ring[0]
    start = {label["id"]: label for label in result["labels"]}
    assert sorted(start) == ["ring-bank-b", "ring-bank-c"]
    assert start["ring-bank-c"]["onset"] - start["ring-bank-b"]["onset"] == 240.0  # two separate onsets
    for copy in ("ring-bank-b", "ring-bank-c"):
        detection = result["detections"][copy]
        assert detection["rule"] == "duplicate-pledge" and 0 <= detection["bank_latency_s"] <= 1.0
    alerts = {a["detail"]["registration"]: a for a in result["alerts"]}
    assert sorted(alerts) == ["REG-ring-bank-b", "REG-ring-bank-c"]
    second, third = alerts["REG-ring-bank-b"]["detail"], alerts["REG-ring-bank-c"]["detail"]
    # w1's second receipt shares the very lots; w2's claims the same goods under its own lot numbers.
    assert set(second["conflicts"]["REG-WR-w1-0001"]) >= {"lots", "tags"}
    assert "lots" not in third["conflicts"]["REG-WR-w1-0001"] and "tags" in third["conflicts"]["REG-WR-w1-0001"]
    involved = sorted((r["bank"], r["site"]) for r in third["registrations"])
    assert involved == [("bank-a", "w1"), ("bank-b", "w1"), ("bank-c", "w2")]  # bank C's honest w2 loan is not named
    assert result["false_alarms"] == [] and result["missed"] == [] and result["status"] == "SUCCESS"


def test_three_banks_with_genuinely_different_goods_raise_nothing(tmp_path):
    run = Run(load_scenario(LIBRARY / "qingdao-ring-near.yaml"), tmp_path)
    outcome = run.execute()
    result = build_result(outcome, "n/a")
    seen = [json.loads(line)["data"] for line in outcome.log.lines if b'"cloud.registry"' in line]
    assert sorted((r["bank"], r["site"]) for r in seen) == [("bank-a", "w1"), ("bank-b", "w1"), ("bank-c", "w2")]
    assert result["alerts"] == [] and result["status"] == "SUCCESS"


def test_warehouses_must_agree_on_what_a_goods_name_means(tmp_path):
    small = load_site("small")
    text = Path(small.source).read_text(encoding="utf-8")
    cheaper = text.replace("value_cny_per_t: 3800", "value_cny_per_t: 3500", 1)
    assert cheaper != text
    _write(tmp_path, "cheap.yaml", cheaper)
    path = _write(tmp_path, "pair.yaml", PAIR_HEAD + "  - {id: w1, site: small}\n  - {id: w2, site: cheap.yaml}\n")
    with pytest.raises(InputError, match="commodity 'steel-coil' is defined differently") as err:
        load_any_site(path)
    assert (err.value.line, err.value.field) == (6, "warehouses[1].site")
    assert sorted(load_any_site("pair").spec.commodities) == sorted(small.spec.commodities)
