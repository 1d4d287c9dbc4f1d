"""The platform under test, as the harness sees it: a broker to publish device frames to, and an
alert endpoint to read alerts from. Nothing else, so any platform that takes the devices'
messages over MQTT (per their Thing Descriptions) and reports alerts over REST or a webhook can
be tested, cangtwin's own live platform included.

The adapter file (YAML, strict; a mistake is one line naming file, line and field):

    broker: {host: 127.0.0.1, port: 1883}
    site: small                           # the platform's id of the warehouse: {siteId} in topics
    topic: "cangtwin/{siteId}/dev/{deviceId}"   # omit: each event's form href in the device's TD
    command_topic: "cangtwin/{siteId}/dev/{deviceId}/do/{action}"  # omit: each action's form href in the TD
                                          # (with `topic` given and this omitted, devices take no commands)
    logins:                               # omit for an anonymous broker
      username: "{siteId}.{deviceId}"
      passwords: {rfid-g1: "…", loop-g1: "…"}
    clock: {speed: 60, start: 1772411400, at: 1795000000}   # the platform's clock (omit: wall time)
    alerts:
      poll: {url: "http://127.0.0.1:8080/v1/alerts", token: "ctw_…", interval_s: 0.5, page_size: 1000}
      # or: webhook: {port: 8765, path: /alerts, token: "…"}   (the harness listens on 127.0.0.1)
      fields: {targets: targets, event_time: event_time}       # where each alert field is; dotted paths
    settle_s: 5                           # keep listening this long after the last frame was accepted
    bank_api:                             # omit when the scenario has no release or rules-update
      url: http://127.0.0.1:8080/v1
      tokens: {bank-a: "ctw_…"}           # each lending bank's token: its release orders
      operator: "ctw_…"                   # the operator's: rule sets
"""

from __future__ import annotations

import json
import string
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import httpx
import paho.mqtt.client as mqtt
import pydantic
from paho.mqtt.enums import CallbackAPIVersion

from cangtwin.devices.thing_descriptions import thing_descriptions
from cangtwin.platform.config_file import InputError, Locator, StrictModel, parse_yaml_located, read_text
from cangtwin.platform.live.config import ClockFile
from cangtwin.platform.records import Alert
from cangtwin.platform.wire import split
from cangtwin.scenarios.matching import SeenAlert

TOPIC_VARIABLES = {"siteId", "deviceId", "event"}  # the TDs' uriVariables, and the event's name
COMMAND_VARIABLES = {"siteId", "deviceId", "action"}  # the TDs' uriVariables, and the action's name
CONNECT_TIMEOUT_S = 10.0
ON_THE_WIRE_S = 0.25  # how long `send` waits for a frame to reach the socket (longer: the broker is away)


class AdapterError(Exception):
    """The platform under test could not be reached or answered nonsense (one line)."""


class BrokerSpec(StrictModel):
    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=1883, ge=1, le=65535)


class LoginsSpec(StrictModel):
    username: str = "{siteId}.{deviceId}"
    passwords: dict[str, str] = {}


class PollSpec(StrictModel):
    url: str = pydantic.Field(pattern=r"^https?://")
    token: str | None = None
    interval_s: float = pydantic.Field(default=0.5, gt=0, le=60)
    items: str = pydantic.Field(default="items", description="dotted path of the list in the body; '' = the body")
    page_size: int | None = pydantic.Field(default=None, ge=1, description="page with offset/limit parameters")


class WebhookSpec(StrictModel):
    port: int = pydantic.Field(ge=0, le=65535)
    path: str = pydantic.Field(default="/alerts", pattern=r"^/")
    token: str | None = None
    items: str = ""


class FieldsSpec(StrictModel):
    """Where each alert field is in the platform's JSON (dotted paths); defaults: cangtwin's API."""

    id: str = "id"
    rule: str = "rule"
    targets: str = "targets"
    event_time: str = "event_time"
    raised_at: str | None = "raised_at"
    visible_at: str | None = "visible_at"
    cloud_received_at: str | None = "cloud_received_at"
    site: str | None = "site"
    severity: str | None = "severity"
    summary: str | None = "summary"


class AlertsSpec(StrictModel):
    poll: PollSpec | None = None
    webhook: WebhookSpec | None = None
    fields: FieldsSpec = FieldsSpec()

    @pydantic.model_validator(mode="after")
    def _one_endpoint(self) -> AlertsSpec:
        if (self.poll is None) == (self.webhook is None):
            raise ValueError("give exactly one of poll or webhook")
        return self


class BankApiSpec(StrictModel):
    """The platform's bank API, for a scenario's bank operations (scenarios/live/bank.py)."""

    url: str = pydantic.Field(pattern=r"^https?://", description="the API's base, e.g. http://host:8080/v1")
    tokens: dict[str, str] = pydantic.Field(default={}, description="bank → its token")
    operator: str | None = None
    timeout_s: float = pydantic.Field(default=10.0, gt=0, le=300)


class AdapterFile(StrictModel):
    broker: BrokerSpec = BrokerSpec()
    site: str = pydantic.Field(min_length=1)
    topic: str | None = None
    command_topic: str | None = None
    logins: LoginsSpec | None = None
    clock: ClockFile = ClockFile()
    alerts: AlertsSpec
    settle_s: float = pydantic.Field(default=5.0, ge=0, le=3600)
    bank_api: BankApiSpec | None = None

    @pydantic.field_validator("topic")
    @classmethod
    def _known_variables(cls, topic: str | None) -> str | None:
        if topic is not None:
            _check_template(topic)
        return topic

    @pydantic.field_validator("command_topic")
    @classmethod
    def _known_command_variables(cls, topic: str | None) -> str | None:
        if topic is not None:
            _check_template(topic, COMMAND_VARIABLES)
        return topic


def _check_template(template: str, variables: set[str] = TOPIC_VARIABLES) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"not a topic template: {exc}") from None
    unknown = sorted(names - variables)
    if unknown:
        raise ValueError(f"unknown variable {{{unknown[0]}}} (have: {', '.join(sorted(variables))})")
    if "+" in template or "#" in template:
        raise ValueError("a device's own topic cannot hold the wildcards + or #")


class Adapter:
    """A loaded adapter file: how to reach the platform under test."""

    def __init__(self, spec: AdapterFile, source: str, locator: Locator | None = None) -> None:
        self.spec, self.source = spec, source
        self._locator = locator or Locator(source, {})
        self._hrefs = _td_hrefs("events")
        self._action_hrefs = _td_hrefs("actions")

    @property
    def speed(self) -> float:
        return self.spec.clock.speed

    def platform_now(self) -> float:
        """The platform's clock, as its deployment defines it (wall time unless dilated)."""
        return self.spec.clock.now()

    def topic(self, device: str, device_type: str | None, event: str) -> str:
        """Where `device` publishes `event`: the adapter's template, else the form in its TD.

        A device of no known type (a forged one) uses the form any TD gives for that event.
        """
        template = self.spec.topic
        if template is None:
            template = self._hrefs.get((device_type, event)) or next(
                (href for (_, name), href in sorted(self._hrefs.items()) if name == event), None)
            if template is None:
                raise AdapterError(f"{device_type or device}: no Thing Description has a form for event {event!r}")
        return _format(template, siteId=self.spec.site, deviceId=device, event=event)

    def command_topics(self, device: str, device_type: str | None) -> dict[str, str]:
        """Action → the topic `device` takes it on: the adapter's command template, else the action's
        form in its TD. None when the adapter maps events by template but says nothing of commands."""
        actions = sorted(action for (kind, action) in self._action_hrefs if kind == device_type)
        if self.spec.command_topic is not None:
            return {a: _format(self.spec.command_topic, siteId=self.spec.site, deviceId=device, action=a)
                    for a in actions}
        if self.spec.topic is not None:
            return {}
        return {a: _format(self._action_hrefs[(device_type, a)], siteId=self.spec.site, deviceId=device)
                for a in actions}

    def error(self, path: tuple, message: str) -> InputError:
        """A mistake about a field of the adapter file, at its line (or its parent's, if it is missing)."""
        return self._locator.error(path, message)

    def login(self, device: str) -> tuple[str, str] | None:
        logins = self.spec.logins
        if logins is None or device not in logins.passwords:
            return None
        return _format(logins.username, siteId=self.spec.site, deviceId=device), logins.passwords[device]


def _format(template: str, **values: str) -> str:
    return template.format(**values)


def _td_hrefs(affordances: str) -> dict[tuple[str, str], str]:
    """(device type, event or action) → the href of its first form, with TD-style {variables}."""
    hrefs = {}
    for device_type, td in thing_descriptions().items():
        for name, affordance in td.get(affordances, {}).items():
            forms = affordance.get("forms") or []
            if forms:
                hrefs[(device_type, name)] = forms[0]["href"]
    return hrefs


def load_adapter(path: str | Path) -> Adapter:
    spec, locator = parse_yaml_located(read_text(path), AdapterFile, str(path))
    return Adapter(spec, str(path), locator)


# --- device side ------------------------------------------------------------------------------

Command = Callable[[str, str, bytes], None]  # (device, action, the payload as it came)


class DevicePublisher:
    """One MQTT session per device, each with its own login; frames go out at QoS 1, and each
    device takes its TD's actions on their topics (QoS 1), handed to `on_command` as they came.

    Publishing never blocks the twin; `drain` waits until the broker has answered every frame.
    A frame from a device the harness did not provision (a forged one) gets a session of its own,
    with no login: on a broker with logins and ACLs that is what an intruder would have, and the
    broker's refusals (of the session, or of a publish: MQTT 5 says "Not authorized") are counted.
    """

    def __init__(self, adapter: Adapter, devices: dict[str, str], on_command: Command | None = None) -> None:
        self.adapter = adapter
        self.types = dict(devices)  # device id → device type
        self.on_command = on_command
        self.sessions: dict[str, mqtt.Client | None] = {}  # None: the broker refused the session
        self.refused: dict[str, str] = {}  # device → why the broker refused its session
        self.sent = 0
        self.acked = 0  # PUBACKs, whatever their reason code
        self.broker_refused = 0  # frames the broker would not take: session refused, or a failing PUBACK
        self._lock = threading.Lock()  # never held while calling paho (its PUBACK path holds its own locks)

    def connect_all(self) -> None:
        """Open every provisioned device's session; AdapterError if the broker refuses one."""
        for device in sorted(self.types):
            self._session(device)
        if self.refused:
            device, reason = sorted(self.refused.items())[0]
            raise AdapterError(f"broker {self._where()}: device {device} refused: {reason}")

    def _where(self) -> str:
        broker = self.adapter.spec.broker
        return f"{broker.host}:{broker.port}"

    def _session(self, device: str) -> mqtt.Client | None:
        if device in self.sessions:
            return self.sessions[device]
        connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"twin-{self.adapter.spec.site}-{device}",
                             protocol=mqtt.MQTTv5)
        login = self.adapter.login(device)
        if login is not None:
            client.username_pw_set(*login)

        commands = {topic: action for action, topic in
                    self.adapter.command_topics(device, self.types.get(device)).items()} if self.on_command else {}

        def on_connect(c, _u, _f, reason, _p) -> None:
            if reason.is_failure:
                self.refused[device] = str(reason)
            elif commands:  # on every (re)connect: a clean session forgets subscriptions
                c.subscribe([(topic, 1) for topic in sorted(commands)])
                return  # ready once the broker has granted them: no early command is missed
            connected.set()

        def on_subscribe(_c, _u, _mid, _reasons, _p) -> None:
            connected.set()

        def on_message(_c, _u, message: mqtt.MQTTMessage) -> None:
            action = commands.get(message.topic)
            if action is not None:
                self.on_command(device, action, message.payload)

        def on_publish(_c, _u, _mid, reason, _p) -> None:
            with self._lock:
                self.acked += 1
                self.broker_refused += reason.is_failure

        client.on_connect = on_connect
        client.on_publish = on_publish
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        client.reconnect_delay_set(min_delay=0.05, max_delay=1)
        broker = self.adapter.spec.broker
        try:
            client.connect(broker.host, broker.port)
        except OSError as exc:
            raise AdapterError(f"broker {self._where()}: {exc.strerror or exc}") from None
        client.loop_start()
        answered = connected.wait(CONNECT_TIMEOUT_S)
        if not answered or device in self.refused:
            client.disconnect()
            client.loop_stop()
            if not answered:
                raise AdapterError(f"broker {self._where()}: no answer within {CONNECT_TIMEOUT_S:.0f} s")
            client = None
        self.sessions[device] = client
        return client

    def send(self, frame: bytes) -> None:
        envelope, _, _ = split(frame)
        topic = self.adapter.topic(envelope.device, self.types.get(envelope.device), envelope.kind)
        client = self._session(envelope.device)
        with self._lock:
            self.sent += 1
            if client is None:
                self.acked += 1  # answered: with a refusal
                self.broker_refused += 1
                return
        client.publish(topic, frame, qos=1)
        self._on_the_wire(client)

    @staticmethod
    def _on_the_wire(client: mqtt.Client) -> None:
        """Wait until paho's network thread has written the frame to the socket.

        A frame carries the device's clock as it was sealed. paho writes from its own thread, which
        needs the GIL; the twin's next step (a camera render, a LiDAR cast) can hold it in one native
        call for hundreds of milliseconds on a loaded machine. Without this wait a frame stamped now
        could leave that much later: at 10x, 0.5 s of wall time is the edge's 5 s clock-skew limit.
        Sleeping hands the GIL over, so the frame leaves before the twin moves on. While the broker
        is away paho keeps the frame for later, and the twin does not wait for it.
        """
        deadline = time.monotonic() + ON_THE_WIRE_S
        while client.want_write() and client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.0002)

    def drain(self, timeout_s: float) -> bool:
        """Wait until the broker has answered every frame; False at the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self.acked >= self.sent:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        for client in self.sessions.values():
            if client is not None:
                client.disconnect()
                client.loop_stop()


# --- alert side -------------------------------------------------------------------------------

def _at(data: Any, path: str | None) -> Any:
    if path is None:
        return None
    for part in path.split(".") if path else []:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class AlertCollector:
    """Alerts as the platform reports them, deduplicated by id, each with when the harness first saw it."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.fields = adapter.spec.alerts.fields
        self.seen: dict[str, SeenAlert] = {}
        self.malformed: list[str] = []
        self.last_error: str | None = None
        self.answered = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None

    # the two ways alerts arrive
    def start(self) -> None:
        alerts = self.adapter.spec.alerts
        if alerts.poll is not None:
            self._thread = threading.Thread(target=self._poll_forever, name="alert-poll", daemon=True)
            self._thread.start()
        else:
            self._server = _webhook_server(self, alerts.webhook)
            self._thread = threading.Thread(target=self._server.serve_forever, name="alert-webhook", daemon=True)
            self._thread.start()

    @property
    def webhook_url(self) -> str | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.adapter.spec.alerts.webhook.path}"

    def poll_once(self) -> None:
        poll = self.adapter.spec.alerts.poll
        headers = {"Authorization": f"Bearer {poll.token}"} if poll.token else {}
        offset = 0
        while True:
            params = {"offset": offset, "limit": poll.page_size} if poll.page_size else None
            try:
                response = httpx.get(poll.url, params=params, headers=headers, timeout=10.0)
            except httpx.HTTPError as exc:
                self.last_error = f"{poll.url}: {exc.__class__.__name__}: {exc}"
                return
            if response.status_code != 200:
                self.last_error = f"{poll.url}: HTTP {response.status_code}: {response.text[:200]}"
                return
            try:
                items = _at(response.json(), poll.items)
            except ValueError:
                self.last_error = f"{poll.url}: the body is not JSON"
                return
            if not isinstance(items, list):
                self.last_error = f"{poll.url}: no list at {poll.items!r} in the body"
                return
            self.answered, self.last_error = True, None
            self.take(items)
            if not poll.page_size or len(items) < poll.page_size:
                return
            offset += len(items)

    def _poll_forever(self) -> None:
        interval = self.adapter.spec.alerts.poll.interval_s
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(interval)

    def take(self, items: list) -> None:
        """Alerts as JSON objects (from a poll or a webhook call)."""
        now = self.adapter.platform_now()
        for item in items:
            seen = self._alert(item, now)
            if seen is None:
                self.malformed.append(json.dumps(item, default=str)[:200])
                continue
            with self._lock:
                self.seen.setdefault(seen.alert.id, seen)

    def _alert(self, item: Any, now: float) -> SeenAlert | None:
        f = self.fields
        alert_id, rule, targets = _at(item, f.id), _at(item, f.rule), _at(item, f.targets)
        event_time = _time(_at(item, f.event_time))
        if not isinstance(alert_id, (str, int)) or not isinstance(rule, str) or event_time is None:
            return None
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            return None
        raised = _time(_at(item, f.raised_at))
        visible = _time(_at(item, f.visible_at))
        visible = now if visible is None else visible  # the platform does not say: when the harness saw it
        received = _time(_at(item, f.cloud_received_at))
        text = lambda path, default="": str(_at(item, path) or default)  # noqa: E731
        alert = Alert(
            id=str(alert_id), rule=rule, category="", severity=text(f.severity), section="",
            site=text(f.site, self.adapter.spec.site), targets=tuple(targets), event_time=event_time,
            observed_at=event_time, raised_at=raised if raised is not None else visible, ruleset="",
            summary=text(f.summary),
        )
        return SeenAlert(alert, received if received is not None else visible, visible)

    def alerts(self) -> list[SeenAlert]:
        with self._lock:
            return [self.seen[k] for k in sorted(self.seen)]

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=15)


def _webhook_server(collector: AlertCollector, spec: WebhookSpec) -> ThreadingHTTPServer:
    """POST <path> with an alert, a list of alerts, or an object holding them at `items`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] != spec.path:
                return self._answer(404, "no such path")
            if spec.token and self.headers.get("Authorization") != f"Bearer {spec.token}":
                return self._answer(401, "missing or wrong bearer token")
            length = int(self.headers.get("Content-Length") or 0)
            if length > 4 << 20:
                return self._answer(413, "body too large")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                return self._answer(400, "the body is not JSON")
            items = _at(body, spec.items)
            items = items if isinstance(items, list) else [items]
            before = len(collector.malformed)
            collector.take(items)
            collector.answered = True
            bad = len(collector.malformed) - before
            return self._answer(422 if bad else 200, f"{bad} alert(s) lack id, rule, targets or event_time" if bad else "ok")

        def _answer(self, status: int, message: str) -> None:
            body = json.dumps({"status": status, "message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # the harness reports; no per-request noise
            pass

    try:
        return ThreadingHTTPServer(("127.0.0.1", spec.port), Handler)
    except OSError as exc:
        raise AdapterError(f"webhook: cannot listen on 127.0.0.1:{spec.port}: {exc.strerror or exc}") from None

