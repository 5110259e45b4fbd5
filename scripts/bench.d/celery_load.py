"""Celery end to end, measured from an app host (run by scripts/bench through the release's bin/run).

Two client layouts, the same measurements:
  --layout deployed   the project's own Celery app and settings (the deployment's overlay), tasks sent
                      to --queue: one that the deployed per-queue units consume, or bare_worker.py's
                      (the deployed worker's options without task events and STARTED);
  --layout default    bench_default.py: a plain Celery app with library defaults on the same broker,
                      consumed by one plain `celery worker` that scripts/bench starts on a worker host.

Per task (no-op, and 10 ms of sleep):
  idle       one task at a time: send -> start and send -> result seen by the client (ms);
  burst      --count tasks published as fast as possible: publish tasks/s, then consumed tasks/s
             (count / (last finish - first start)) and send -> start under load.
  alone      with --alone-queue, instead of the above: --count no-op tasks published to a queue
             that nothing consumes, the queue deleted afterwards: the client's own publish rate,
             with no consumer sharing the machine's cores (what one client can feed consumers).
Prints one JSON document on stdout.
"""

import argparse
import json
import os
import statistics
import sys
import time


def percentiles(values):
    if not values:
        return {}
    ordered = sorted(values)

    def pick(fraction):
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "n": len(ordered)}


def load_app(layout, celery_app):
    if layout == "default":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_default

        return bench_default.app
    # bin/run starts in the release directory: the project and the settings overlay are there.
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    from celery.app.utils import find_app

    return find_app(celery_app)


def collect(app, results, timeout):
    """The return values of a burst's tasks, in the order they were sent. Read from the result
    backend every 20 ms (get_many), not by a get() per task: the Redis result consumer behind get()
    sometimes left a burst's results unread for 20-150 s after the worker had stored every one of
    them (a pub/sub wait per get(); celery/celery issue 4733 describes the same), which measured the
    client's wait instead of the consumers."""
    metas = dict(
        app.backend.get_many([result.id for result in results], timeout=timeout, interval=0.02)
    )
    failed = [task_id for task_id, meta in metas.items() if meta["status"] != "SUCCESS"]
    if failed:
        raise SystemExit(
            f"{len(failed)} tasks did not succeed, e.g. {failed[0]}: {metas[failed[0]]}"
        )
    return [metas[result.id]["result"] for result in results]


def run(app, task_name, args, queue, idle, count, timeout):
    # Connections are made before the clock starts.
    began = time.perf_counter()
    app.send_task(task_name, args=args, queue=queue).get(timeout=timeout)
    phases = {"first_task": time.perf_counter() - began}

    began = time.perf_counter()
    start_ms, result_ms = [], []
    for _ in range(idle):
        sent = time.time()
        body = app.send_task(task_name, args=args, queue=queue).get(timeout=timeout)
        seen = time.time()
        start_ms.append((body["started_at"] - sent) * 1000)
        result_ms.append((seen - sent) * 1000)

    phases["idle"] = time.perf_counter() - began
    sent_at, results = [], []
    began = time.perf_counter()
    for _ in range(count):
        sent_at.append(time.time())
        results.append(app.send_task(task_name, args=args, queue=queue))
    published = time.perf_counter() - began
    published_at = time.time()
    bodies = collect(app, results, timeout)
    phases["publish"] = published
    phases["drain"] = time.time() - published_at
    first_start = min(body["started_at"] for body in bodies)
    last_finish = max(body["finished_at"] for body in bodies)
    # On a small machine the publisher takes CPU from the workers while it publishes: the rate of
    # the tasks finished after the last publish is the consumers' own.
    after = [body for body in bodies if body["finished_at"] > published_at]
    return {
        "idle_send_to_start_ms": percentiles(start_ms),
        "idle_send_to_result_ms": percentiles(result_ms),
        "published_per_s": round(count / published, 1),
        "consumed_per_s": round(count / max(last_finish - first_start, 1e-6), 1),
        "consumed_after_publish_per_s": round(len(after) / max(last_finish - published_at, 1e-6), 1)
        if len(after) >= count // 10
        else None,
        "burst_send_to_start_ms": percentiles(
            [(body["started_at"] - sent) * 1000 for body, sent in zip(bodies, sent_at, strict=True)]
        ),
        "burst_mean_runtime_ms": round(
            statistics.mean((body["finished_at"] - body["started_at"]) * 1000 for body in bodies), 2
        ),
        # Where the wall time went (s): a stall shows in its phase, not only in the total.
        "phases_s": {name: round(seconds, 2) for name, seconds in phases.items()},
    }


def publish_alone(app, task_name, queue, count):
    """Tasks/s one client publishes into a queue that nothing consumes. The queue and the exchange
    Celery declared for it (named after it) are deleted afterwards: each client declares its own
    kind of exchange (the project's topic ones for quorum queues, the plain app's direct ones)."""
    try:
        # Connection and queue declaration before the clock starts.
        app.send_task(task_name, queue=queue)
        began = time.perf_counter()
        for _ in range(count):
            app.send_task(task_name, queue=queue)
        return round(count / (time.perf_counter() - began), 1)
    finally:
        with app.connection_for_write() as connection:
            # Declared on this channel first: kombu's virtual transports (Redis) delete only the
            # bindings that the deleting channel knows of.
            bound = app.amqp.queues[queue].bind(connection.default_channel)
            bound.declare()
            bound.delete()
            bound.exchange.delete()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["deployed", "default"], required=True)
    parser.add_argument(
        "--celery-app", default="", help="the project's Celery app (deployed layout)"
    )
    parser.add_argument("--queue", required=True)
    parser.add_argument("--noop-task", default="diagnostics.tasks.ping")
    parser.add_argument("--sleep-task", default="diagnostics.tasks.sleep")
    parser.add_argument(
        "--idle", type=int, default=500, help="no-op tasks one at a time (half as many of 10 ms)"
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--sleep-count", type=int, default=400)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--alone-queue", help="a queue nothing consumes: the client's rate alone")
    options = parser.parse_args()

    app = load_app(options.layout, options.celery_app)
    noop, sleep = options.noop_task, options.sleep_task
    if options.layout == "default":
        noop, sleep = "bench.noop", "bench.sleep"
    report = {"layout": options.layout, "broker": app.connection_for_write().transport_cls}
    if options.alone_queue:
        report["noop_published_alone_per_s"] = publish_alone(
            app, noop, options.alone_queue, options.count
        )
        json.dump(report, sys.stdout)
        return
    report |= {
        "queue": options.queue,
        "noop": run(app, noop, [], options.queue, options.idle, options.count, options.timeout),
        "sleep_10ms": run(
            app,
            sleep,
            [0.01],
            options.queue,
            options.idle // 2,
            options.sleep_count,
            options.timeout,
        ),
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
