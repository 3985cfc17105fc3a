"""Restore a planned batch on a Ray cluster: the driver plans and reports, actors restore.

The driver (this process) runs the same planning as a local batch, once; every photo whose
output is still missing goes to a pool of Ray actors. Each actor builds one
:class:`~oldphoto.api.Restorer` (one per GPU by default) and restores the photos it is
given with :func:`oldphoto.batch.restore_job`, the local engine's one-photo path, writing
the files itself, atomically, to the output folder (a filesystem every node mounts at the
same path). Records come back to the driver and are reported in job order, as locally.

Why plain actors and not Ray Data's ``map_batches``: the work items are file paths, not
data, so there is nothing for a dataset to carry; a bounded in-flight queue per actor
streams records back as photos finish (in order, for the progress bar and ``--json``);
Ray's own actor fault tolerance (``max_restarts``, ``max_task_retries``) replaces a dead
worker and retries its photos a bounded number of times; an error that would fail every
photo (weights, usage) stops the run at once instead of being retried; and the extra stays
``ray`` alone, without Ray Data's pyarrow and pandas.

Faults: a photo that fails is a failed record (as locally). A worker process that dies is
restarted by Ray and its photos are retried (``max_task_retries``); a photo whose worker
died on every attempt is a failed record naming that, and a worker that cannot be
restarted any more leaves the pool. Ctrl-C kills the actors and removes the temp files
they may have left; finished outputs stay, and running the same command resumes.

It is a little over 400 lines because the driver loop, the actor and the fault handling
only make sense together: each fault rule above is a few lines in each of them.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oldphoto.batch.planning import Job, will_restore
from oldphoto.batch.running import Record, Settings, restore_job
from oldphoto.errors import OldPhotoError, UsageError, WeightsError, one_line
from oldphoto.fsutil import remove_stale_parts

INSTALL_HINT = "pip install '.[ray]' in oldphoto's folder"

#: Photos queued on each actor beyond the one it is restoring: the actor runs two at a time
#: (its Restorer serialises the networks), so one photo's decode and writes overlap another's
#: networks, and the next photo is already there when one finishes.
IN_FLIGHT_PER_WORKER = 3


class EngineUnavailable(OldPhotoError):
    """``--engine ray`` was asked for but Ray is not installed."""


@dataclass(frozen=True)
class Cluster:
    """Where and how wide a Ray run is.

    ``address``: ``None`` starts a private Ray on this machine (loopback only, no
    dashboard) for the run; ``"auto"`` joins the running cluster; anything else is a
    cluster address. ``workers``: actors to start (default: one per GPU, else one per
    ``cpus_per_worker`` CPUs). ``gpus_per_worker``: default 1 on a cluster with GPUs, else 0.
    ``max_task_retries``: attempts after the first for a photo whose worker died;
    ``max_restarts``: how often one worker may be replaced before it leaves the pool.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    max_task_retries: int = 2
    max_restarts: int = 4

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker must be 0 or more, not {self.gpus_per_worker}")
        if self.cpus_per_worker <= 0:
            raise UsageError(f"--cpus-per-worker must be more than 0, not {self.cpus_per_worker}")


def import_ray() -> Any:
    """The ``ray`` module, or :class:`EngineUnavailable` naming the extra to install."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise EngineUnavailable(f"--engine ray needs Ray: {INSTALL_HINT}") from None
    return ray


class Worker:
    """One Ray actor: one Restorer, loaded once, restoring the photos it is handed.

    Construction errors (a bad option, no GPU for ``--device cuda``, the folder missing on
    this node) are kept and raised by :meth:`ready`, so the driver reports them once
    instead of Ray restarting an actor that can never work.
    """

    def __init__(self, settings: Settings, restorer_options: dict[str, Any], cwd: str) -> None:
        self.settings = settings
        self.node = socket.gethostname()
        self.restorer: Any = None
        self.error: OldPhotoError | None = None
        try:
            # Paths in jobs, --weights and --save-faces are the driver's; the shared filesystem
            # is mounted at the same place on every node, so relative paths mean the same here.
            os.chdir(cwd)
        except OSError:
            self.error = UsageError(
                f"{cwd}: missing on node {self.node}; the photos and outputs must be on a filesystem "
                "every node mounts at the same path"
            )
            return
        try:
            from oldphoto.api import Restorer

            self.restorer = Restorer(**restorer_options)
        except OldPhotoError as exc:
            self.error = exc

    def ready(self) -> dict[str, Any]:
        """Where this worker runs and what it restores with; raises its construction error."""
        if self.error is not None:
            raise self.error
        import oldphoto

        return {"node": self.node, "pid": os.getpid(), "device": str(self.restorer.device), "oldphoto": oldphoto.__file__}

    def restore(self, job: Job) -> Record:
        """Restore one photo and write its files, exactly as a local run does."""
        record = restore_job(job, lambda: self.restorer, self.settings)
        record.node = self.node
        return record


def _no_restorer() -> Any:
    raise AssertionError("a photo that needs no restoring asked for a Restorer")


def run(
    jobs: list[Job],
    settings: Settings,
    restorer_options: dict[str, Any],
    cluster: Cluster | None = None,
    *,
    on_start: Callable[[Job], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
    on_workers: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[Record]:
    """Restore ``jobs`` on Ray actors and return one record each, in job order (like :func:`oldphoto.batch.run`).

    ``restorer_options`` are :class:`~oldphoto.api.Restorer`'s keyword arguments; each actor
    builds its own. Jobs that need no restoring (finished outputs, plan errors) are
    settled here without starting anything, so a finished batch never touches the cluster.
    ``on_workers`` receives each worker's :meth:`Worker.ready` description once all are up.
    :class:`WeightsError` and :class:`UsageError` from any worker end the run, as locally.
    """
    cluster = cluster or Cluster()
    records: list[Record | None] = [None] * len(jobs)
    todo = [i for i, job in enumerate(jobs) if will_restore(job, settings.overwrite)]
    for i, job in enumerate(jobs):
        if not will_restore(job, settings.overwrite):
            records[i] = restore_job(job, _no_restorer, settings)
    started = reported = 0

    def start_through(i: int) -> None:
        """``on_start`` for every job up to ``i``, in job order, each once (as a local run calls it)."""
        nonlocal started
        while started <= i:
            if on_start is not None:
                on_start(jobs[started])
            started += 1

    def report_ready() -> None:
        nonlocal reported
        while reported < len(jobs) and records[reported] is not None:
            start_through(reported)
            if on_record is not None:
                on_record(records[reported])  # type: ignore[arg-type]
            reported += 1

    if not todo:
        report_ready()
        return [r for r in records if r is not None]

    ray = import_ray()
    _route_cluster_messages_to_stderr()
    started_here = _connect(ray, cluster)
    workers: list[Any] = []
    try:
        for i in todo:
            _remove_parts(jobs[i])
        workers = _start_workers(ray, cluster, settings, restorer_options, on_workers)
        _Dispatcher(ray, cluster, workers, jobs, records, start_through, report_ready).run(todo)
    except BaseException:
        _stop(ray, workers)
        workers = []
        for i in todo:
            if records[i] is None:
                _remove_parts(jobs[i])
        raise
    finally:
        _stop(ray, workers, wait=False)  # idle now; killed so a caller's next run gets their resources back
        if started_here:
            ray.shutdown()
    report_ready()
    return [r for r in records if r is not None]


class _Dispatcher:
    """Keep every live worker's queue full, collect records as they come, report them in order."""

    def __init__(
        self,
        ray: Any,
        cluster: Cluster,
        workers: list[Any],
        jobs: list[Job],
        records: list[Record | None],
        start_through: Callable[[int], None],
        report_ready: Callable[[], None],
    ) -> None:
        self.ray, self.cluster, self.workers, self.jobs, self.records = ray, cluster, workers, jobs, records
        self._start_through, self.report_ready = start_through, report_ready
        self.in_flight: dict[Any, tuple[int, int]] = {}  # task -> (job, worker)
        self.load = [0] * len(workers)
        self.alive = set(range(len(workers)))
        self.suspect: dict[Any, int] = {}  # a ready() probe sent after a worker died under a photo

    def run(self, todo: list[int]) -> None:
        try:
            self._loop(deque(todo))
        except BaseException:
            # Stopping (an error every photo would hit, or Ctrl-C): nothing in flight is to be retried.
            for ref in self.in_flight:
                self.ray.cancel(ref)
            raise

    def _loop(self, queue: deque[int]) -> None:
        ray = self.ray
        while queue or self.in_flight or self.suspect:
            probing = set(self.suspect.values())
            for w in sorted(self.alive - probing, key=lambda w: self.load[w]):
                while queue and self.load[w] < IN_FLIGHT_PER_WORKER:
                    i = queue.popleft()
                    self._start_through(i)
                    self.in_flight[self.workers[w].restore.remote(self.jobs[i])] = (i, w)
                    self.load[w] += 1
            if not self.alive and queue:
                # Every worker is gone for good: the rest cannot be restored by this run.
                while queue:
                    i = queue.popleft()
                    self._start_through(i)
                    self.records[i] = _failed(self.jobs[i], f"{self.jobs[i].source}: no worker left (each was replaced "
                                              f"{self.cluster.max_restarts} times and died again)")
            if not self.in_flight and not self.suspect:
                break
            done, _ = ray.wait([*self.in_flight, *self.suspect], num_returns=1)
            for ref in done:
                if ref in self.suspect:
                    self._probed(ref)
                else:
                    self._collect(ref)
            self.report_ready()

    def _probed(self, ref: Any) -> None:
        from ray.exceptions import RayActorError

        w = self.suspect.pop(ref)
        try:
            self.ray.get(ref)
        except RayActorError:
            self.alive.discard(w)

    def _collect(self, ref: Any) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        i, w = self.in_flight.pop(ref)
        self.load[w] -= 1
        job = self.jobs[i]
        try:
            self.records[i] = self.ray.get(ref)
            _remove_parts(job)  # an attempt killed mid-write (Ray retried it, and this one finished) leaves its temp file
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, (WeightsError, UsageError)):
                raise cause from None  # every photo would fail the same way, as in a local run
            self.records[i] = _failed(job, f"{job.source}: {one_line(cause or exc, named=True)}")
        except RayActorError as exc:
            attempts = self.cluster.max_task_retries + 1
            self.records[i] = _failed(job, f"{job.source}: its worker died on each of {attempts} attempts ({_first_line(exc)})")
            _remove_parts(job)
            if w in self.alive and w not in self.suspect.values():
                self.suspect[self.workers[w].ready.remote()] = w


def _failed(job: Job, reason: str) -> Record:
    return Record(input=str(job.source), output=str(job.output), status="failed", error=reason)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _remove_parts(job: Job) -> None:
    """Remove temp files a killed worker left beside this job's outputs (nothing writes them now)."""
    for path in (job.output, job.comparison, job.save_mask):
        if path is not None:
            remove_stale_parts(path)


def _route_cluster_messages_to_stderr() -> None:
    """Send the messages Ray's driver prints for the cluster (a worker died, a task is retried) to stderr.

    Ray prints them on stdout, where ``--json`` records go; they are diagnostics, so they
    belong beside the progress bar and the warnings. Best effort: the hook is Ray's own
    printing function, looked up by name on each message.
    """
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_oldphoto_stderr", False):
        return

    def to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr._oldphoto_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def _connect(ray: Any, cluster: Cluster) -> bool:
    """Join (or start) Ray; return True when this call started it, so the run shuts it down."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
    try:
        if cluster.address is None:
            # A private single-machine cluster for this run: loopback only, small object store
            # (jobs and records are a few hundred bytes; photos never travel through Ray).
            ray.init(address="local", _node_ip_address="127.0.0.1", object_store_memory=100 * 2**20, **quiet)
        else:
            ray.init(address=cluster.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "start Ray on this machine" if cluster.address is None else f"reach the Ray cluster at {cluster.address}"
        raise OldPhotoError(f"cannot {where}: {_first_line(exc)}") from None
    return True


def _start_workers(
    ray: Any,
    cluster: Cluster,
    settings: Settings,
    restorer_options: dict[str, Any],
    on_workers: Callable[[list[dict[str, Any]]], None] | None,
) -> list[Any]:
    """Start the actors, wait until each has built its Restorer, and raise the first one's error."""
    from ray.exceptions import RayActorError, RayTaskError

    total = ray.cluster_resources()
    gpus_here = float(total.get("GPU", 0))
    gpus = cluster.gpus_per_worker if cluster.gpus_per_worker is not None else (1.0 if gpus_here else 0.0)
    cpus = cluster.cpus_per_worker
    count = cluster.workers
    if count is None:
        count = int(gpus_here // gpus) if gpus else int(float(total.get("CPU", 1)) // cpus)
        count = max(1, count)
    if gpus * count > gpus_here or cpus * count > float(total.get("CPU", 0)):
        raise UsageError(
            f"{count} workers with {gpus:g} GPU and {cpus:g} CPU each do not fit this cluster "
            f"({float(total.get('CPU', 0)):g} CPUs, {gpus_here:g} GPUs); lower --workers, --gpus-per-worker or --cpus-per-worker"
        )
    actor = ray.remote(Worker).options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_concurrency=2,
        max_restarts=cluster.max_restarts,
        max_task_retries=cluster.max_task_retries,
    )
    options = {**restorer_options}
    if options.get("weights") is not None:
        options["weights"] = Path(options["weights"])
    workers = [actor.remote(settings, options, os.getcwd()) for _ in range(count)]
    try:
        described = ray.get([w.ready.remote() for w in workers])
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        _stop(ray, workers)
        if isinstance(cause, OldPhotoError):
            raise cause from None
        raise OldPhotoError(f"a Ray worker failed to start: {_first_line(exc)}") from None
    except RayActorError as exc:
        _stop(ray, workers)
        raise OldPhotoError(f"a Ray worker died while starting: {_first_line(exc)}") from None
    if on_workers is not None:
        on_workers(described)
    return workers


def _stop(ray: Any, workers: list[Any], *, wait: bool = True) -> None:
    """Kill the actors; with ``wait``, until they are gone, so none can still be writing a file."""
    from ray.exceptions import GetTimeoutError, RayActorError

    for w in workers:
        ray.kill(w, no_restart=True)
    if not wait:
        return
    for w in workers:
        try:
            ray.get(w.ready.options(max_task_retries=0).remote(), timeout=10)
        except (RayActorError, GetTimeoutError):
            pass
        except Exception:  # noqa: BLE001 - the actor's own construction error: it is gone either way
            pass
