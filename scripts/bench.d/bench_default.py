"""A plain Celery app with library defaults (no acks_late, the default prefetch, the default pool and
concurrency, no task events), on the deployment's broker and result backend: what one `celery worker`
gives out of the box, for scripts/bench to compare the deployed per-queue layout with.

One setting differs: remote control is off. Otherwise the deployment's Flower, which broadcasts
`enable_events` to every worker on the broker every few seconds, turns this worker's task events on
a few seconds into its run (measured: 620-670 tasks/s consumed with them, 940-1,030 without), and
the baseline would depend on when its broadcast arrives.

The task bodies match the reference app's diagnostics.tasks.ping / sleep (the fields they return)."""

import os
import time

from celery import Celery

app = Celery(
    "bench",
    broker=os.environ["CELERY_BROKER_URL"],
    backend=os.environ["CELERY_RESULT_BACKEND"],
)
app.conf.worker_enable_remote_control = False


def _context(task, started_at):
    return {
        "hostname": task.request.hostname,
        "queue": (task.request.delivery_info or {}).get("routing_key"),
        "started_at": started_at,
        "finished_at": time.time(),
    }


@app.task(bind=True, name="bench.noop")
def noop(self):
    return {**_context(self, time.time()), "pong": True}


@app.task(bind=True, name="bench.sleep")
def sleep(self, seconds=0.01):
    started_at = time.time()
    time.sleep(min(float(seconds), 1.0))
    return {**_context(self, started_at), "slept": float(seconds)}
