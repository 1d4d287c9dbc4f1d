"""The MQTT topic layout of a deployment, in one place so broker ACLs and clients agree.

Device topics are the forms of the devices' W3C WoT Thing Descriptions (`devices/td/*.json`), so
a harness or a vendor's device that follows the TDs needs no topic mapping:

    cangtwin/<site>/<device>/<event>             device → edge: sealed wire frames (one writer: that device)
    cangtwin/<site>/<device>/command/<action>    edge → device: actions from the device's TD (capture_evidence)
    cangtwin/<site>/up                           edge → cloud: UplinkBatch (QoS 1, persistent sessions)
    cangtwin/<site>/ack                          cloud → edge: UplinkAck, once the batch is committed
    cangtwin/<site>/cmd                          cloud → edge: BookSync, RuleSetUpdate, CaptureEvidence
    cangtwin/workers/<worker>                    retained presence of cloud workers (cleared by their will)

Device topics have four levels and the platform's own three, so no device or event name can
collide with an uplink, an ack or a command topic; a site may not be called `workers`.
"""

from __future__ import annotations

ROOT = "cangtwin"
WORKERS = f"{ROOT}/workers/+"
COMMAND = "command"  # the TDs' action forms: <device>/command/<action>
RESERVED_SITES = {"workers"}


def device(site: str, device_id: str, event: str) -> str:
    """Where `device_id` publishes `event` (the event's form href in its Thing Description)."""
    return f"{ROOT}/{site}/{device_id}/{event}"


def device_events(site: str, device_id: str) -> str:
    """Every event topic of one device: what its ACL lets it write."""
    return f"{ROOT}/{site}/{device_id}/+"


def devices(site: str) -> str:
    """Every device event topic of a warehouse: what its edge subscribes to."""
    return f"{ROOT}/{site}/+/+"


def device_command(site: str, device_id: str, action: str) -> str:
    """Where the edge invokes `action` on a device (the action's form href in its TD)."""
    return f"{ROOT}/{site}/{device_id}/{COMMAND}/{action}"


def device_commands(site: str, device_id: str) -> str:
    """Every action topic of one device: what its ACL lets it read."""
    return f"{ROOT}/{site}/{device_id}/{COMMAND}/+"


def uplink(site: str) -> str:
    return f"{ROOT}/{site}/up"


def ack(site: str) -> str:
    return f"{ROOT}/{site}/ack"


def command(site: str) -> str:
    return f"{ROOT}/{site}/cmd"


def worker(worker_id: str) -> str:
    return f"{ROOT}/workers/{worker_id}"


def parse(topic: str) -> tuple[str, str, str | None]:
    """(site, channel, device or worker) of a topic in this layout; ValueError otherwise.

    The channel of a device event is `event:<name>`, of a device action `command:<name>`."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == ROOT and parts[1] == "workers":
        return "", "workers", parts[2]
    if len(parts) == 3 and parts[0] == ROOT and parts[2] in ("up", "ack", "cmd"):
        return parts[1], parts[2], None
    if len(parts) == 4 and parts[0] == ROOT and all(parts[1:]):
        return parts[1], f"event:{parts[3]}", parts[2]
    if len(parts) == 5 and parts[0] == ROOT and parts[3] == COMMAND and all(parts[1:]):
        return parts[1], f"command:{parts[4]}", parts[2]
    raise ValueError(f"not a cangtwin topic: {topic!r}")


def check_name(kind: str, name: str) -> str | None:
    """Why `name` cannot be a site, device or worker id in a topic level, or None if it can."""
    if not name:
        return f"{kind} id is empty"
    bad = sorted(set(name) & set("/+#\0"))
    if bad:
        return f"{kind} id {name!r} contains {' '.join(bad)}, which MQTT topics reserve"
    if kind == "site" and name in RESERVED_SITES:
        return f"site id {name!r} is reserved for the cloud workers' presence topics"
    return None
