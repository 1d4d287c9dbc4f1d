"""Evidence packages: built from a real log and signed heads, verified trusting no producer."""

from __future__ import annotations

import msgspec
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.ledger.log import EvidenceLog
from cangtwin.platform.ledger.package import (
    ConsistencyLink,
    EvidencePackage,
    PackageEntry,
    PackageError,
    build_package,
    verify_package,
)
from cangtwin.platform.ledger.pipeline import EvidencePipeline, PipelineConfig
from cangtwin.platform.ledger.tree_head import (
    SignedTreeHead,
    TreeHead,
    generate_party_keys,
    public_key_bytes,
    sign_tree_head,
)

ALERT = {"type": "alert", "id": "A-17", "rule": "outbound-without-release", "lot": "CU-2024-031"}
ALERT_ENTRY = msgspec.json.encode({**ALERT, "visible_at": 101.5})  # the alert as the ledger holds it
KEYS = generate_party_keys()
PUBLIC = public_key_bytes(KEYS)


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    """A 5-block log (sizes 3, 7, 12, 18, 25), its signed heads, and a package over 3 entries."""
    path = tmp_path_factory.mktemp("pkg") / "evidence.log"
    heads = []
    with EvidenceLog.open(path, create=True) as log:
        for b in range(5):
            block = [ALERT_ENTRY if (b, i) == (0, 1) else b"frame %d/%d" % (b, i) for i in range(3 + b)]
            heads.append(sign_tree_head(log.append_block(block, timestamp=100.0 + b)[1], KEYS))
        package = build_package(log, ALERT, [1, 8, 13], heads, PUBLIC)
    return heads, package


def edit(package: bytes, change) -> bytes:
    pkg = msgspec.json.decode(package, type=EvidencePackage)
    return msgspec.json.encode(change(pkg))


def failed(report) -> list[str]:
    return [c.name for c in report.failures]


def flip(b: bytes, bit: int = 0) -> bytes:
    out = bytearray(b)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def test_honest_package_verifies_with_pinned_keys(evidence):
    _, package = evidence
    report = verify_package(package, 3, trusted_keys=PUBLIC)
    assert report.ok and report.keys_pinned
    names = [c.name for c in report.checks]
    # each entry is proven against the first head that includes it; the latest head is included
    assert {"inclusion #1@3", "inclusion #8@12", "inclusion #13@18"} <= set(names)
    assert {"consistency 3->12", "consistency 12->18", "consistency 18->25"} <= set(names)
    assert "signatures@25" in names
    pkg = msgspec.json.decode(package, type=EvidencePackage)
    assert pkg.alert == ALERT and [e.data for e in pkg.entries] == [ALERT_ENTRY, b"frame 2/1", b"frame 3/1"]


def test_an_edited_alert_copy_fails_though_every_proof_holds(evidence):
    edited = edit(evidence[1], lambda pkg: msgspec.structs.replace(pkg, alert={**pkg.alert, "lot": "CU-2024-099"}))
    assert failed(verify_package(edited, 3, trusted_keys=PUBLIC)) == ["alert"]


def test_a_package_that_drops_the_alert_entry_fails(evidence):
    dropped = edit(evidence[1], lambda pkg: msgspec.structs.replace(pkg, entries=pkg.entries[1:]))
    report = verify_package(dropped, 3, trusted_keys=PUBLIC)
    assert failed(report) == ["alert"] and "no proven entry holds alert 'A-17'" in report.failures[0].detail


def test_unpinned_keys_are_reported_as_such(evidence):
    report = verify_package(evidence[1], 4)
    assert report.ok and not report.keys_pinned
    assert "not pinned" in next(c.detail for c in report.checks if c.name == "keys")


def test_edited_entry_fails_its_inclusion_check(evidence):
    def change(pkg):
        entries = list(pkg.entries)
        entries[1] = msgspec.structs.replace(entries[1], data=b"frame 2/1 (doctored)")
        return msgspec.structs.replace(pkg, entries=entries)
    assert failed(verify_package(edit(evidence[1], change), 3)) == ["inclusion #8@12"]


def test_edited_root_breaks_signatures_consistency_and_inclusion(evidence):
    def change(pkg):
        heads = list(pkg.heads)
        h = heads[1]
        heads[1] = SignedTreeHead(msgspec.structs.replace(h.head, root=flip(h.head.root)),
                                  h.signatures)
        return msgspec.structs.replace(pkg, heads=heads)
    assert failed(verify_package(edit(evidence[1], change), 3)) == [
        "signatures@12", "consistency 3->12", "consistency 12->18", "inclusion #8@12"]


def test_too_few_signatures_fail_the_quorum_and_say_who_signed(evidence):
    def change(pkg):
        heads = list(pkg.heads)
        kept = {n: s for n, s in heads[0].signatures.items() if n in ("bank", "regulator")}
        kept["warehouse"] = flip(heads[0].signatures["warehouse"])
        kept["auditor"] = heads[0].signatures["platform"]
        heads[0] = SignedTreeHead(heads[0].head, kept)
        return msgspec.structs.replace(pkg, heads=heads)
    report = verify_package(edit(evidence[1], change), 3)
    assert failed(report) == ["signatures@3"]
    detail = report.failures[0].detail
    assert "2 valid signatures of 3" in detail
    assert "warehouse: bad signature" in detail and "auditor: not a known party" in detail
    assert verify_package(edit(evidence[1], change), 2).ok


def test_forged_history_with_the_producers_own_keys_fails_only_when_keys_are_pinned(evidence):
    rogue = generate_party_keys()

    def change(pkg):
        heads = [sign_tree_head(h.head, rogue) for h in pkg.heads]
        return msgspec.structs.replace(pkg, heads=heads, public_keys=public_key_bytes(rogue))
    forged = edit(evidence[1], change)
    assert verify_package(forged, 4).ok  # self-consistent: this is why keys must be pinned
    report = verify_package(forged, 4, trusted_keys=PUBLIC)
    assert "keys" in failed(report) and "signatures@25" in failed(report)


def test_missing_or_wrong_consistency_proof_fails(evidence):
    def drop(pkg):
        return msgspec.structs.replace(pkg, consistency=pkg.consistency[1:])
    assert failed(verify_package(edit(evidence[1], drop), 3)) == ["consistency 3->12"]

    def swap(pkg):
        link = pkg.consistency[2]
        bad = ConsistencyLink(link.old_size, link.new_size, [flip(link.proof[0])] + link.proof[1:])
        return msgspec.structs.replace(pkg, consistency=[*pkg.consistency[:2], bad])
    assert failed(verify_package(edit(evidence[1], swap), 3)) == ["consistency 18->25"]


def test_structural_problems_are_named(evidence):
    assert failed(verify_package(b"{not json", 3)) == ["decode"]
    assert failed(verify_package(b'{"format": 3}', 3)) == ["decode"]
    assert failed(verify_package(edit(evidence[1], lambda p: msgspec.structs.replace(
        p, format="other/v9")), 3)) == ["format"]
    assert failed(verify_package(edit(evidence[1], lambda p: msgspec.structs.replace(
        p, entries=[])), 3)) == ["entries", "alert"]
    assert "heads" in failed(verify_package(edit(evidence[1], lambda p: msgspec.structs.replace(
        p, heads=p.heads[::-1])), 3))
    orphan = PackageEntry(0, b"frame 0/0", 4, [])
    assert failed(verify_package(edit(evidence[1], lambda p: msgspec.structs.replace(
        p, entries=[*p.entries, orphan])), 3)) == ["inclusion #0@4"]


def test_build_refuses_entries_no_head_covers(tmp_path):
    with EvidenceLog.open(tmp_path / "log", create=True) as log:
        _, head = log.append_block([b"a", b"b"])
        sth = sign_tree_head(head, KEYS)
        log.append_block([b"c"])
        with pytest.raises(PackageError, match="entry 2 is not covered"):
            build_package(log, ALERT, [2], [sth], PUBLIC)
        beyond = sign_tree_head(TreeHead(9, head.root, 0.0), KEYS)
        with pytest.raises(PackageError, match="beyond the log"):
            build_package(log, ALERT, [0], [beyond], PUBLIC)


FIELDS = ["entry.data", "entry.inclusion", "head.root", "head.signature", "link.proof"]


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_bit_in_evidence_fails_verification(evidence, data):
    field = data.draw(st.sampled_from(FIELDS))
    bit = data.draw(st.integers(0, 255))

    def change(pkg):
        entries, heads, links = list(pkg.entries), list(pkg.heads), list(pkg.consistency)
        if field.startswith("entry"):
            i = data.draw(st.integers(0, len(entries) - 1))
            e = entries[i]
            if field == "entry.data":
                entries[i] = msgspec.structs.replace(e, data=flip(e.data, bit))
            else:
                j = data.draw(st.integers(0, len(e.inclusion) - 1))
                proof = [*e.inclusion[:j], flip(e.inclusion[j], bit), *e.inclusion[j + 1:]]
                entries[i] = msgspec.structs.replace(e, inclusion=proof)
        elif field.startswith("head"):
            i = data.draw(st.integers(0, len(heads) - 1))
            h = heads[i]
            if field == "head.root":
                heads[i] = SignedTreeHead(msgspec.structs.replace(h.head, root=flip(h.head.root,
                                                                                     bit)),
                                          h.signatures)
            else:
                # with all four signatures and a quorum of four, any one bad signature fails it
                name = data.draw(st.sampled_from(sorted(h.signatures)))
                heads[i] = SignedTreeHead(h.head, {**h.signatures,
                                                   name: flip(h.signatures[name], bit)})
        else:
            i = data.draw(st.integers(0, len(links) - 1))
            link = links[i]
            j = data.draw(st.integers(0, len(link.proof) - 1))
            proof = [*link.proof[:j], flip(link.proof[j], bit), *link.proof[j + 1:]]
            links[i] = ConsistencyLink(link.old_size, link.new_size, proof)
        return msgspec.structs.replace(pkg, entries=entries, heads=heads, consistency=links)

    report = verify_package(edit(evidence[1], change), 4, trusted_keys=PUBLIC)
    assert not report.ok


def test_pipeline_output_packages_and_verifies(tmp_path):
    env = simpy.Environment()
    clock = SimPyClock(env)
    receipts = []
    with EvidenceLog.open(tmp_path / "pipe.log", create=True) as log:
        pipeline = EvidencePipeline(clock, log, KEYS, PipelineConfig(max_block_entries=16))
        for i in range(100):
            data = ALERT_ENTRY if i == 0 else b"clip %d" % i
            clock.call_later(i * 0.003, lambda data=data: pipeline.submit(data, receipts.append))
        env.run()
        indices = [r.index for r in receipts if r.index % 13 == 0]
        package = build_package(log, ALERT, indices, pipeline.heads, PUBLIC)
    report = verify_package(package, 4, trusted_keys=PUBLIC)
    assert report.ok
    assert sum(c.name.startswith("inclusion") for c in report.checks) == len(indices)
