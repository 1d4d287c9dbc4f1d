"""The MQTT topic layout of a deployment, in one place so broker ACLs and clients agree.

    cangtwin/<site>/dev/<device>      device → edge: sealed wire frames (one writer: that device)
    cangtwin/<site>/devcmd/<device>   edge → device: actions from the device's Thing Description
    cangtwin/<site>/up                edge → cloud: UplinkBatch (QoS 1, persistent sessions)
    cangtwin/<site>/ack               cloud → edge: UplinkAck, once the batch is committed
    cangtwin/<site>/cmd               cloud → edge: BookSync, RuleSetUpdate, CaptureEvidence
    cangtwin/workers/<worker>         retained presence of cloud workers (cleared by their will)
"""

from __future__ import annotations

ROOT = "cangtwin"
WORKERS = f"{ROOT}/workers/+"


def device(site: str, device_id: str) -> str:
    return f"{ROOT}/{site}/dev/{device_id}"


def devices(site: str) -> str:
    return f"{ROOT}/{site}/dev/+"


def device_command(site: str, device_id: str) -> str:
    return f"{ROOT}/{site}/devcmd/{device_id}"


def uplink(site: str) -> str:
    return f"{ROOT}/{site}/up"


def ack(site: str) -> str:
    return f"{ROOT}/{site}/ack"


def command(site: str) -> str:
    return f"{ROOT}/{site}/cmd"


def worker(worker_id: str) -> str:
    return f"{ROOT}/workers/{worker_id}"


def parse(topic: str) -> tuple[str, str, str | None]:
    """(site, channel, device or worker) of a topic in this layout; ValueError otherwise."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == ROOT and parts[1] == "workers":
        return "", "workers", parts[2]
    if len(parts) == 3 and parts[0] == ROOT and parts[2] in ("up", "ack", "cmd"):
        return parts[1], parts[2], None
    if len(parts) == 4 and parts[0] == ROOT and parts[2] in ("dev", "devcmd"):
        return parts[1], parts[2], parts[3]
    raise ValueError(f"not a cangtwin topic: {topic!r}")


def check_name(kind: str, name: str) -> str | None:
    """Why `name` cannot be a site, device or worker id in a topic level, or None if it can."""
    if not name:
        return f"{kind} id is empty"
    bad = sorted(set(name) & set("/+#\0"))
    if bad:
        return f"{kind} id {name!r} contains {' '.join(bad)}, which MQTT topics reserve"
    return None
