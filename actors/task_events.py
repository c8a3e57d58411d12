"""`@untracked`: actor methods called many times a second or on every health round (pings, audio
batches to an STT stage, the ingress's health reads) are left out of Ray's task-event record.
The GCS keeps every task's events for the dashboard (up to 100,000 tasks); in the soak these
calls grew it ~26 MB in 10 minutes (`benchmarks/soak.py`, `memory_mb.by_process_kind`), and
each record costs the calling and the called process a report. A failure still raises to the
caller as any actor call's does; lifecycle calls (start, close, reserve) stay recorded."""

from __future__ import annotations

import ray

untracked = ray.method(enable_task_events=False)
