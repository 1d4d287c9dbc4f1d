"""The cloud as a live service (or one cloud worker of several): CloudService over MQTT and SQL.

An uplink message is acknowledged to the broker, and its UplinkAck sent to the edge, only after
the store committed what it changed; a crash before that leaves the message with the broker and
the records in the edge's outbox. With scale-out, workers announce themselves with a retained
presence message that their last will clears, and each owns the warehouses the hash ring gives it,
subscribing to those warehouses' uplink topics only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import msgspec
import paho.mqtt.client as mqtt
from sqlalchemy.exc import SQLAlchemyError

from cangtwin.platform.clock import AsyncioClock, Clock
from cangtwin.platform.cloud.alert_desk import AlertCase
from cangtwin.platform.cloud.book import CollateralBook
from cangtwin.platform.cloud.service import CloudService, CloudTiming
from cangtwin.platform.live import topics
from cangtwin.platform.live.hashring import HashRing
from cangtwin.platform.live.mqtt import MqttEndpoint, MqttSettings
from cangtwin.platform.live.store import LOANS_SLICE, CloudStore, StoreError, book_from, book_slice
from cangtwin.platform.records import UplinkAck, batch_decoder, downlink_decoder
from cangtwin.platform.rules.ruleset import RuleSet, parse_ruleset

log = logging.getLogger(__name__)
Tap = Callable[[str, object], None]
LIVE_TIMING = CloudTiming(per_batch_s=0.0, per_record_s=0.0)
PRESENCE_SETTLE_S = 0.3  # time to hear the retained presence of the other workers before claiming sites
RECONCILE_S = 1.0  # how often changes made outside an ingest (a bank API, escalations) are written


class CloudNode:
    def __init__(
        self,
        worker_id: str,
        mqtt_settings: MqttSettings,
        store: CloudStore,
        sites: list[str],
        ruleset: RuleSet,
        seed_book: CollateralBook | None = None,
        scale_out: bool = False,
        tap: Tap = lambda _kind, _record: None,
        clock: Clock | None = None,
        **cloud_options,
    ) -> None:
        """`clock` is the platform's time (default: wall time); `cloud_options` go to CloudService
        (e.g. `evidence`, an EvidenceRecorder on the same clock)."""
        self.worker_id = worker_id
        self._clock = clock
        self.store = store
        self.sites = sorted(sites)
        self.scale_out = scale_out
        self.user_tap = tap
        self.owned: set[str] = set()
        self.members: set[str] = {worker_id}
        self.malformed = 0
        self.foreign = 0  # batches for a warehouse this worker does not own (acked; the edge resends)
        self.failed: asyncio.Future | None = None
        self._ingesting = False
        self._outgoing: list[tuple[str, bytes]] = []
        self._new_cases: list[AlertCase] = []
        self._changed_cases: list[AlertCase] = []
        self._persist_scheduled = False
        self._claimed = False  # ownership is computed once the other workers' presence was heard
        self._early: list[mqtt.MQTTMessage] = []  # what the broker delivered (from the session) before that
        self._ruleset = ruleset
        self._seed_book = seed_book
        self._cloud_options = cloud_options
        will = (topics.worker(worker_id), b"", True) if scale_out else None
        self.link = MqttEndpoint(f"cloud-{worker_id}", mqtt_settings, self._on_message, manual_ack=True, will=will)
        if scale_out:
            self.link.subscribe(topics.WORKERS)
        self.cloud: CloudService | None = None
        self.on_alerts: Callable[[list[tuple[str, AlertCase]]], None] | None = None  # e.g. a WebhookSink

    # --- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.failed = loop.create_future()
        book = self.store.load_book() or self._seed_book or CollateralBook()
        history = self.store.ruleset_history()
        ruleset = parse_ruleset(history[-1]["text"], f"store ruleset {history[-1]['label']}") if history else self._ruleset
        self.cloud = CloudService(self._clock or AsyncioClock(loop), book, ruleset, self._tap, timing=LIVE_TIMING, **self._cloud_options)
        self.store.record_ruleset(ruleset.sha256, ruleset.label, ruleset.text, self.cloud.clock.now())
        if self.store.load_book() is None:
            self.store.commit({}, [], [], book, set(self.sites) | {LOANS_SLICE})
        self.cloud.start()
        self._stored_cases = {case.alert.id: self._case_state(case) for case in self.cloud.desk.cases.values()}
        self._stored_book = {site: book_slice(book, site) for site in (*self.sites, LOANS_SLICE)}
        loop.call_later(RECONCILE_S, self._reconcile)
        await self.link.start()
        if self.scale_out:
            self.link.publish(topics.worker(self.worker_id), b"alive", retain=True)
            await asyncio.sleep(PRESENCE_SETTLE_S)
        self._claimed = True
        self._rebalance()
        early, self._early = self._early, []
        for message in early:
            self._on_message(message)

    def close(self) -> None:
        """A clean stop: presence is withdrawn so the other workers take the warehouses over at once."""
        if self.scale_out:
            self.link.publish(topics.worker(self.worker_id), b"", retain=True)
        self.link.close()

    # --- ownership ---------------------------------------------------------------------------
    def _rebalance(self) -> None:
        wanted = HashRing(self.members).sites_of(self.worker_id, self.sites) if self.scale_out else set(self.sites)
        for site in sorted(self.owned - wanted):
            self.link.unsubscribe(topics.uplink(site))
            self.owned.discard(site)
            self.cloud.context.edge_last_heard.pop(site, None)
            self.user_tap("live.released", {"worker": self.worker_id, "site": site})
        gained = sorted(wanted - self.owned)
        stored = self.store.load_book() if gained else None
        for site in gained:
            self._take_over(site, stored)

    def _take_over(self, site: str, stored: CollateralBook | None) -> None:
        """Load the warehouse's state as its last owner committed it, then listen to its uplink."""
        cloud = self.cloud
        if stored is not None:
            self._replace_site_slice(cloud.book, stored, site)
        self.store.restore_alerts(cloud.desk, site)
        for case in cloud.desk.cases.values():
            if case.alert.site == site:
                self._stored_cases[case.alert.id] = self._case_state(case)
        self._stored_book[site] = book_slice(cloud.book, site)
        self.owned.add(site)
        cloud.connect_edge(site, lambda data, site=site: self._downlink(site, data))
        cloud._seen[site] = self.store.load_ranges(site)  # connect_edge made an empty one
        self.link.subscribe(topics.uplink(site))
        self.user_tap("live.owned", {"worker": self.worker_id, "site": site})

    @staticmethod
    def _replace_site_slice(book: CollateralBook, stored: CollateralBook, site: str) -> None:
        fresh = book_from([(stored.version, book_slice(stored, site)), (stored.version, book_slice(stored, LOANS_SLICE))])
        for lot_id in [lid for lid, lot in book.lots.items() if lot.site == site]:
            del book.lots[lot_id]
            book.pledges.pop(lot_id, None)
            book.released.discard(lot_id)
        book.lots.update(fresh.lots)
        book.pledges.update(fresh.pledges)
        book.released.update(fresh.released)
        book.receipts.update(fresh.receipts)
        book.loans.update(fresh.loans)
        book.version = max(book.version, stored.version)

    # --- messages ----------------------------------------------------------------------------
    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        try:
            site, channel, name = topics.parse(message.topic)
        except ValueError:
            self.link.ack(message)
            return
        if channel == "workers":
            before = set(self.members)
            (self.members.add if message.payload else self.members.discard)(name)
            self.members.add(self.worker_id)
            if self.members != before and self._claimed:
                self._rebalance()
            self.link.ack(message)
        elif channel == "up" and not self._claimed:
            self._early.append(message)
        elif channel == "up":
            self._ingest(site, message)
        else:
            self.link.ack(message)

    def _ingest(self, site: str, message: mqtt.MQTTMessage) -> None:
        if self.failed.done():
            return  # the store failed: leave everything with the broker for the next worker run
        if site not in self.owned:
            self.foreign += 1
            self.link.ack(message)
            return
        try:
            batch = batch_decoder.decode(message.payload)
        except msgspec.DecodeError as err:
            self._poison(site, message, f"undecodable uplink batch: {err}")
            return
        if batch.site != site:
            self._poison(site, message, f"batch for site {batch.site!r} on the uplink of {site!r}")
            return
        cloud = self.cloud
        book_version = cloud.book.version
        self._ingesting = True
        try:
            cloud.on_uplink(message.payload)
        except msgspec.DecodeError as err:  # a record inside the batch did not decode
            self._ingesting = False
            self._poison(site, message, f"undecodable record: {err}")
            return
        finally:
            self._ingesting = False
        book_sites = {site} if cloud.book.version != book_version else set()
        if not self._persist({site: cloud._seen[site]}, book_sites):
            return  # nothing acknowledged: the broker and the edge's outbox both still hold it
        self._flush_outgoing()
        self.link.ack(message)

    def _poison(self, site: str, message: mqtt.MQTTMessage, detail: str) -> None:
        """A message that can never be applied is counted and acknowledged, not retried forever."""
        self.malformed += 1
        self._outgoing.clear()
        self.user_tap("live.malformed", {"site": site, "detail": detail})
        self.link.ack(message)

    @staticmethod
    def _case_state(case: AlertCase) -> tuple:
        return case.status, case.repeats, len(case.history)

    def _reconcile(self) -> None:
        """Write whatever changed outside an ingest: alert lifecycle steps, bank actions on the book.

        Whoever changed the cloud's state (a bank API, the escalation timer), the store catches up
        within RECONCILE_S, so no caller has to know about the store.
        """
        if self.failed.done():
            return
        book_sites = self._pending_book_sites()
        if self._pending_cases() or book_sites:
            if self._persist({}, book_sites) and book_sites:
                self.cloud.book_changed()
        asyncio.get_running_loop().call_later(RECONCILE_S, self._reconcile)

    def _pending_cases(self) -> bool:
        """Queue the alert cases whose lifecycle moved since they were stored; whether any wait."""
        self._changed_cases.extend(
            case for case in self.cloud.desk.cases.values()
            if case.alert.site in self.owned and case.alert.id in self._stored_cases
            and self._stored_cases[case.alert.id] != self._case_state(case) and case not in self._changed_cases)
        return bool(self._changed_cases or self._new_cases)

    def _pending_book_sites(self) -> set[str]:
        return {site for site in (*self.owned, LOANS_SLICE)
                if book_slice(self.cloud.book, site) != self._stored_book.get(site)}

    def commit_changes(self) -> bool:
        """Store at once what a bank API just changed (book, alert lifecycle); False if the store
        failed (the node then stops, as `failed` says). The API answers only after this."""
        if self.failed.done():
            return False
        book_sites = self._pending_book_sites()
        if not self._pending_cases() and not book_sites:
            return True
        return self._persist({}, book_sites)

    def _persist(self, ranges: dict, book_sites: set[str]) -> bool:
        new, changed = self._new_cases, self._changed_cases
        self._new_cases, self._changed_cases = [], []
        try:
            self.store.commit(ranges, new, changed, self.cloud.book, book_sites)
            events = self._alert_events(new, changed)
            for case in (*new, *changed):
                self._stored_cases[case.alert.id] = self._case_state(case)
            for site in book_sites:
                self._stored_book[site] = book_slice(self.cloud.book, site)
        except SQLAlchemyError as exc:  # the store is gone: stop rather than ack what is not stored
            error = StoreError(f"cloud store commit failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            log.error("%s", error)
            if self.failed is not None and not self.failed.done():
                self.failed.set_exception(error)
            self._outgoing.clear()
            return False
        if events and self.on_alerts is not None:
            self.on_alerts(events)
        return True

    def _alert_events(self, new: list[AlertCase], changed: list[AlertCase]) -> list[tuple[str, AlertCase]]:
        """What just became bank-visible: `alert.raised`, a lifecycle step (`alert.acknowledged`,
        `alert.resolved`, `alert.escalated`) or `alert.repeated`, judged against the stored state."""
        events = [("alert.raised", case) for case in new]
        seen: set[str] = set()
        for case in changed:
            if case.alert.id in seen:
                continue
            seen.add(case.alert.id)
            status, repeats, _ = self._stored_cases.get(case.alert.id, ("raised", 0, 0))
            if case.status != status:
                events.append((f"alert.{case.status}", case))
            elif case.repeats != repeats:
                events.append(("alert.repeated", case))
        return events

    def _downlink(self, site: str, data: bytes) -> None:
        if site not in self.owned:
            return
        message = downlink_decoder.decode(data)
        topic = topics.ack(site) if isinstance(message, UplinkAck) else topics.command(site)
        if self._ingesting:
            self._outgoing.append((topic, data))  # held until the batch is committed
        else:
            self.link.publish(topic, data)

    def _flush_outgoing(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        for topic, data in outgoing:
            self.link.publish(topic, data)

    def _tap(self, kind: str, record: object) -> None:
        if kind == "cloud.alert":
            self._new_cases.append(record)
        elif kind == "cloud.escalated":
            self._changed_cases.append(self.cloud.desk.cases[record["alert"]])
        elif kind == "cloud.ruleset":
            ruleset = self.cloud.ruleset
            self.store.record_ruleset(ruleset.sha256, ruleset.label, ruleset.text, self.cloud.clock.now())
        self.user_tap(kind, record)
        if not self._ingesting and (self._new_cases or self._changed_cases) and not self._persist_scheduled:
            self._persist_scheduled = True  # cloud-side rules and escalations, outside any ingest
            asyncio.get_running_loop().call_soon(self._persist_side_effects)

    def _persist_side_effects(self) -> None:
        self._persist_scheduled = False
        self._persist({}, set())

    # --- what a bank-facing API calls ----------------------------------------------------------
    def acknowledge(self, alert_id: str, actor: str) -> AlertCase:
        case = self.cloud.desk.acknowledge(alert_id, self.cloud.clock.now(), actor)
        self._changed_cases.append(case)
        self._persist({}, set())
        return case

    def resolve(self, alert_id: str, actor: str) -> AlertCase:
        case = self.cloud.desk.resolve(alert_id, self.cloud.clock.now(), actor)
        self._changed_cases.append(case)
        self._persist({}, set())
        return case

    def change_book(self, change: Callable[[CollateralBook], object]) -> object:
        """Apply a bank action to the book (BookError leaves it unchanged), store it, tell the edges."""
        result = change(self.cloud.book)
        slices = {lot.site for lot in self.cloud.book.lots.values()} | set(self.sites) | {LOANS_SLICE}
        if self._persist({}, {s for s in slices if book_slice(self.cloud.book, s) != self._stored_book.get(s)}):
            self.cloud.book_changed()
        return result

    def activate_ruleset(self, text: str, source: str) -> RuleSet:
        return self.cloud.activate_ruleset(text, source)
