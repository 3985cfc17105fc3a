"""Restoring many photos: plan the jobs, then run them, going on past bad files.

Two steps, two modules. :mod:`~oldphoto.batch.planning` pairs inputs with outputs without
opening an image (and is what any other engine reuses); :mod:`~oldphoto.batch.running`
restores the jobs through one :class:`~oldphoto.api.Restorer` and reports a record each.
"""

from __future__ import annotations

from oldphoto.batch.planning import Job, check_writable, needs_work, plan, will_restore
from oldphoto.batch.running import Record, RestorerLike, Settings, compute_job, restore_job, run, settle, side_by_side

__all__ = [
    "Job",
    "Record",
    "RestorerLike",
    "Settings",
    "check_writable",
    "compute_job",
    "needs_work",
    "plan",
    "restore_job",
    "run",
    "settle",
    "side_by_side",
    "will_restore",
]
