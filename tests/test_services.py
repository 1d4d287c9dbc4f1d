"""Round trips through the private Mosquitto and PostgreSQL instances that live-mode tests use."""

from __future__ import annotations

import queue
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from services import (
    MissingBinary,
    MosquittoInstance,
    PostgresInstance,
    ServiceError,
    find_program,
    pid_alive,
    port_accepts,
    skip_or_fail,
    start_mosquitto,
    start_postgres,
)

WAIT_S = 10.0
SYSTEM_MQTT_PORT = 1883
SYSTEM_PG_PORT = 5432


class Client:
    """A paho client whose connect result and received messages arrive on queues."""

    def __init__(self, broker: MosquittoInstance, client_id: str, username: str | None = None,
                 password: str | None = None) -> None:
        self.connects: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.paho.on_connect = lambda _c, _u, _f, reason, _p: self.connects.put(reason)
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_subscribe = lambda _c, _u, _mid, reasons, _p: self.subscribed.put(reasons)
        self.paho.connect(broker.host, broker.port)
        self.paho.loop_start()
        self.connect_result = self.connects.get(timeout=WAIT_S)

    def subscribe(self, topic: str) -> None:
        self.paho.subscribe(topic, qos=1)
        reasons = self.subscribed.get(timeout=WAIT_S)
        assert [reason.value for reason in reasons] == [1], f"subscription to {topic} not granted at QoS 1"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=WAIT_S)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def test_qos1_publish_reaches_subscriber(mosquitto: MosquittoInstance) -> None:
    assert mosquitto.host == "127.0.0.1" and mosquitto.port != SYSTEM_MQTT_PORT
    subscriber = Client(mosquitto, "sub")
    publisher = Client(mosquitto, "pub")
    try:
        assert not subscriber.connect_result.is_failure and not publisher.connect_result.is_failure
        subscriber.subscribe("wh/1/weight")
        publisher.publish("wh/1/weight", b"1234.5")
        message = subscriber.messages.get(timeout=WAIT_S)
        assert (message.topic, message.payload, message.qos) == ("wh/1/weight", b"1234.5", 1)
    finally:
        subscriber.close()
        publisher.close()


ACL = """\
user scale1
topic readwrite devices/scale1/#

user watcher
topic read devices/#
"""


def test_passwords_and_acl_are_enforced(tmp_path: Path) -> None:
    try:
        broker = start_mosquitto(tmp_path, passwords={"scale1": "s3cret", "watcher": "w:tch er"}, acl=ACL)
    except MissingBinary as error:
        skip_or_fail(error)
    with broker:
        for username, password in (("scale1", "wrong"), (None, None)):
            rejected = Client(broker, "intruder", username, password)
            rejected.close()
            assert rejected.connect_result.is_failure, f"broker accepted user {username!r}"

        watcher = Client(broker, "watcher", "watcher", "w:tch er")
        scale = Client(broker, "scale1", "scale1", "s3cret")
        try:
            assert not watcher.connect_result.is_failure and not scale.connect_result.is_failure
            watcher.subscribe("devices/#")
            # MQTT 3.1.1 brokers acknowledge a forbidden publish and drop it, so the forbidden one goes
            # first: messages from one client arrive in order, so once the allowed one is in, the
            # forbidden one would have been too.
            scale.publish("devices/scale2/weight", b"forged")
            scale.publish("devices/scale1/weight", b"real")
            received = watcher.messages.get(timeout=WAIT_S)
            assert (received.topic, received.payload) == ("devices/scale1/weight", b"real")
            assert watcher.messages.empty()
        finally:
            watcher.close()
            scale.close()


def test_broker_start_failure_reports_log_tail(tmp_path: Path) -> None:
    try:
        with pytest.raises(ServiceError, match="(?s)log tail:.*Invalid line in acl_file"):
            start_mosquitto(tmp_path, acl="no such directive\n")
    except MissingBinary as error:
        skip_or_fail(error)


def test_mosquitto_stop_frees_port_and_ends_process(tmp_path: Path) -> None:
    try:
        broker = start_mosquitto(tmp_path)
    except MissingBinary as error:
        skip_or_fail(error)
    assert port_accepts(broker.port) and pid_alive(broker.pid)
    broker.stop()
    assert not port_accepts(broker.port)
    assert not pid_alive(broker.pid)


def test_postgres_round_trip(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.info.host == "127.0.0.1" and conn.info.port != SYSTEM_PG_PORT
        conn.execute("CREATE TABLE receipts (id text PRIMARY KEY, tonnes numeric NOT NULL)")
        conn.execute("INSERT INTO receipts VALUES (%s, %s), (%s, %s)", ("WR-1", 12.5, "WR-2", 7))
        rows = conn.execute("SELECT id, tonnes FROM receipts ORDER BY id").fetchall()
    assert [(row[0], float(row[1])) for row in rows] == [("WR-1", 12.5), ("WR-2", 7.0)]


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_an_empty_database(postgres_dsn: str, run: str) -> None:
    """Whichever run comes second would see the other's table if the databases were shared."""
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE marker (run text)")
        conn.execute("INSERT INTO marker VALUES (%s)", (run,))


def test_databases_on_one_server_are_isolated(postgres_server: PostgresInstance) -> None:
    dsn_a = postgres_server.create_database("iso_a")
    dsn_b = postgres_server.create_database("iso_b")
    try:
        with psycopg.connect(dsn_a) as conn:
            conn.execute("CREATE TABLE only_in_a (x int)")
        with psycopg.connect(dsn_b) as conn, pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM only_in_a")
    finally:
        postgres_server.drop_database("iso_a")
        postgres_server.drop_database("iso_b")


def test_postgres_stop_frees_port_and_ends_process(tmp_path: Path) -> None:
    try:
        server = start_postgres(tmp_path)
    except MissingBinary as error:
        skip_or_fail(error)
    pid = server.pid
    assert port_accepts(server.port) and pid_alive(pid)
    server.stop()
    assert not port_accepts(server.port)
    assert not pid_alive(pid)


def test_missing_program_names_its_package() -> None:
    with pytest.raises(MissingBinary) as caught:
        find_program("cangtwin-no-such-program", "cangtwin-pkg", ("/usr/sbin",))
    assert caught.value.package == "cangtwin-pkg" and "install" in str(caught.value)


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_program_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install cangtwin-pkg"):
        skip_or_fail(MissingBinary("cangtwin-no-such-program", "cangtwin-pkg"))
