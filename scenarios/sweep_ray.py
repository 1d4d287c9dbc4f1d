"""Running a sweep's replications as Ray tasks on a cluster (`cangtwin sweep --ray ADDRESS`).

A task carries its point's input files (scenario, site, rules) as text, runs the replication
in a temporary folder on whichever node Ray picks, and sends the whole run folder back, so the
sweep folder on the driver ends up exactly as a local sweep leaves it. Each result records the
Ray node and worker that ran it. The nodes need cangtwin installed (the same version).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cangtwin.platform.config_file import InputError
from cangtwin.scenarios.sweep_spec import write_inputs

if TYPE_CHECKING:
    from cangtwin.scenarios.sweep import Job, Progress


def _task(inputs: dict[str, str], seed: int, rep: str) -> dict:
    """Runs on a Ray worker: one replication in a scratch folder, returned with its files."""
    import ray

    from cangtwin.scenarios.sweep import replicate

    with tempfile.TemporaryDirectory(prefix="cangtwin-ray-") as tmp:
        source = write_inputs(Path(tmp), inputs)
        folder = Path(tmp) / rep
        done = replicate(str(source), seed, str(folder))
        done["files"] = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    context = ray.get_runtime_context()
    done["executor"] = {"kind": "ray", "node_id": context.get_node_id(), "worker_id": context.get_worker_id(),
                        "node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(), "pid": os.getpid()}
    return done


def _unpack(folder: Path, done: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in done.pop("files", {}).items():
        path = folder / name
        if folder.resolve() not in path.resolve().parents:
            raise ValueError(f"a Ray task returned a file outside its run folder: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return done


def run_on_ray(address: str, out: Path, jobs: list[Job], progress: Progress | None) -> dict[Job, dict]:
    """Submit every job to the cluster at `address`; collect the results as they finish."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address.rsplit(":", 1)[0].strip("[]") in ("127.0.0.1", "localhost", "::1"):
        # A cluster on this machine: Ray would otherwise swap a loopback address for the address
        # of the machine's outward interface; this switch (read when ray is imported) keeps it.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray.exceptions import RayError

    from cangtwin.scenarios.sweep import crashed

    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as err:  # Ray raises ConnectionError, ValueError or RuntimeError for a bad address
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError("--ray", None, None, f"cannot join the Ray cluster at {address!r}: {first}") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_task)
        pending = {task.remote(job.point.inputs, job.seed, Path(job.folder).name): job for job in jobs}
        done: dict[Job, dict] = {}
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                job = pending[ref]
                try:
                    done[job] = _unpack(out / job.folder, ray.get(ref))
                except RayError as err:  # the task or its worker died: an error for this replication only
                    done[job] = crashed(out / job.folder, f"the Ray task failed: {type(err).__name__}: {err}\n")
                if progress:
                    progress(len(done), len(jobs), f"{job.point.id} rep {job.index} (seed {job.seed})")
        return done
    finally:
        ray.shutdown()
