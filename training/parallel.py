"""Training on several devices and machines: Keras' data parallelism on JAX, the HDF5 stream sharded per process.

One process drives every local device it is given through
``keras.distribution.DataParallel``: each global batch is split across the
devices and the gradients are averaged, so the run is the one-device run
computed in pieces. Several processes (on one machine or many) join one
cluster through ``jax.distributed`` (CPU collectives over gloo); each reads
only its slice of every global batch from the HDF5 file
(``training.data.H5Batches(shard=...)``) and the distribution is told not
to shard the data again (``auto_shard_dataset=False``). Model parallelism is
not supported: every device holds the whole model.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass

import numpy as np

from processing.cliutil import UsageError

ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass(frozen=True)
class Topology:
    """Where a run trains: devices in all (every process), processes, this process, the Keras backend."""
    devices: int = 1
    processes: int = 1
    process_id: int = 0
    backend: str = "tensorflow"

    @property
    def writes(self) -> bool:
        """Only process 0 writes the run folder."""
        return self.process_id == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.process_id, self.processes

    def describe(self, batch_size: int) -> dict:
        return {"devices": self.devices, "processes": self.processes, "global_batch": batch_size,
                "backend": self.backend}


def cluster_from(coordinator: str | None, num_processes: int | None, process_id: int | None,
                 environ=os.environ) -> tuple[str, int, int] | None:
    """(coordinator, processes, this process) from the flags, else from Keras' own variables; None: one process.
    UsageError if only some are given or they disagree."""
    if coordinator is None and num_processes is None and process_id is None:
        given = [environ.get(k) for k in ENV]
        if not any(given):
            return None
        if not all(given):
            raise UsageError(f"set all of {', '.join(ENV)} or none")
        try:
            coordinator, num_processes, process_id = given[0].split(",")[0], int(given[1]), int(given[2])
        except ValueError:
            raise UsageError(f"{ENV[1]} and {ENV[2]} must be whole numbers") from None
    if coordinator is None or num_processes is None or process_id is None:
        raise UsageError("several processes need all of --coordinator HOST:PORT, --num-processes N, --process-id I")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--coordinator takes HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}")
    if not 0 <= process_id < num_processes:
        raise UsageError(f"--process-id must be from 0 to {num_processes - 1}, got {process_id}")
    return coordinator, num_processes, process_id


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _receive(conn: socket.socket, deadline: float) -> dict | None:
    data = b""
    while not data.endswith(b"\n"):
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = conn.recv(4096)
        except (socket.timeout, OSError):
            return None
        if not chunk or len(data) > 65536:
            return None
        data += chunk
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def rendezvous(coordinator: str, num_processes: int, process_id: int, dataset: str, timeout_s: float) -> None:
    """Every process meets process 0 at the coordinator's address before JAX does, within ``timeout_s``.

    Process 0 listens there, hears each other process's id, cluster size and
    dataset fingerprint, and answers all of them at once: go, or why not (a
    process missing, the same id twice, another size, another dataset). So a
    cluster that cannot form is one line and exit 2 in every process, never a
    hang and never the runtime's abort (``jax.distributed`` ends a process that
    cannot register by aborting it). Then the port is free for JAX's service.
    """
    host, port = _split(coordinator)
    deadline = time.monotonic() + timeout_s
    me = {"process_id": process_id, "num_processes": num_processes, "dataset": dataset}
    if process_id == 0:
        _host_rendezvous(host, port, me, deadline, timeout_s)
        return
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=max(0.01, deadline - time.monotonic()))
            break
        except OSError:
            if time.monotonic() >= deadline:
                raise UsageError(f"process {process_id} could not reach the coordinator {coordinator} within "
                                 f"{timeout_s:g} s: start process 0 there (the same --coordinator in every process)")
            time.sleep(0.2)
    with conn:
        _send(conn, me)
        answer = _receive(conn, deadline + timeout_s)   # process 0 may wait its whole timeout for the others
    if answer is None:
        raise UsageError(f"process {process_id}: the coordinator {coordinator} did not answer within {timeout_s:g} s")
    if not answer.get("go"):
        raise UsageError(f"process {process_id}: {answer.get('why', 'refused by the coordinator')}")


def _host_rendezvous(host: str, port: int, me: dict, deadline: float, timeout_s: float) -> None:
    n = me["num_processes"]
    peers: dict[int, tuple[socket.socket, dict]] = {}
    problems = []
    with socket.create_server((host, port), reuse_port=hasattr(socket, "SO_REUSEPORT")) as server:
        while len(peers) < n - 1 and time.monotonic() < deadline:
            server.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                conn, _ = server.accept()
            except (socket.timeout, OSError):
                break
            message = _receive(conn, deadline)
            pid = message.get("process_id") if message else None
            if not isinstance(pid, int) or pid in peers or not 0 < pid < n:
                problems.append(f"a process announced id {pid!r} (taken or out of 1 to {n - 1})")
                _send_quietly(conn, {"go": False, "why": problems[-1]})
                continue
            peers[pid] = (conn, message)
        missing = sorted(set(range(1, n)) - set(peers))
        if missing:
            problems.append(f"process(es) {missing} did not join within {timeout_s:g} s")
        sizes = {pid for pid, (_, m) in peers.items() if m.get("num_processes") != n}
        if sizes:
            problems.append(f"process(es) {sorted(sizes)} were started with another --num-processes than {n}")
        differ = sorted(pid for pid, (_, m) in peers.items() if m.get("dataset") != me["dataset"])
        if differ:
            problems.append(f"the dataset of process(es) {differ} differs from process 0's (rows, labels, splits "
                            "or build parameters): give every process the same file")
        why = "; ".join(problems)
        for conn, _ in peers.values():
            _send_quietly(conn, {"go": not problems, "why": why})
            conn.close()
    if problems:
        raise UsageError(f"process 0: the cluster did not form: {why}")


def _send_quietly(conn: socket.socket, message: dict) -> None:
    try:
        _send(conn, message)
    except OSError:
        pass


def join_cluster(coordinator: str, num_processes: int, process_id: int, dataset: str, timeout_s: int) -> None:
    """The rendezvous, then ``jax.distributed.initialize`` on the coordinator's address (bound there only)."""
    import jax

    rendezvous(coordinator, num_processes, process_id, dataset, timeout_s)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s, coordinator_bind_address=coordinator)


def setup(devices: str, batch_size: int, cluster: tuple[str, int, int] | None, dataset: str,
          timeout_s: int) -> Topology:
    """Joins the cluster where one is given (``dataset``: this process's dataset fingerprint) and sets Keras'
    distribution; the Topology the run trains on."""
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        if cluster or devices not in ("all", "1"):
            raise UsageError(f"training on several devices or machines runs on JAX: set KERAS_BACKEND=jax "
                             f"(this is {backend})")
        return Topology(backend=backend)
    import jax

    processes, process_id = 1, 0
    if cluster:
        join_cluster(*cluster, dataset, timeout_s)
        processes, process_id = cluster[1], cluster[2]
    local = jax.local_devices()
    per_process = len(local) if devices == "all" else int(devices)
    if per_process > len(local):
        raise UsageError(f"--devices {devices}: this process sees {len(local)} device(s) ({local[0].platform})")
    total = per_process * processes
    if batch_size % total:
        raise UsageError(f"--batch-size {batch_size} is the global batch and must divide by the {total} devices "
                         f"({per_process} per process x {processes} processes): give a multiple of {total}")
    if total > 1:
        mesh = [d for p in range(processes) for d in
                sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per_process]]
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=mesh, auto_shard_dataset=False))
    return Topology(total, processes, process_id, backend)


def fingerprint(images_shape, labels: np.ndarray, split: np.ndarray, params: str) -> str:
    """What must be the same in every process's dataset: shape, labels, splits, build parameters."""
    h = hashlib.sha256(repr(tuple(images_shape)).encode())
    for part in (np.ascontiguousarray(labels).tobytes(), np.ascontiguousarray(split).tobytes(), params.encode()):
        h.update(part)
    return h.hexdigest()
