"""Drip a heartbeat task into every Celery queue and export, per queue, how old the last heartbeat
that a worker finished is (celery_queue_heartbeat_age_seconds{queue}) and how many messages wait
in it (celery_queue_length{queue}).

A worker whose unit is active, whose PID and port answer, may still have stopped consuming (a
consumer that did not come back after a broker reconnect, a frozen main process): only a task that
goes through the queue and comes back proves the queue is served. Every `interval` seconds each
queue with no heartbeat in flight gets one: Celery's built-in `celery.accumulate`, which every
worker of every Celery app runs (it returns its arguments). A heartbeat finished when its result is
in the result backend; the age is the time since the last finished one was sent. One that no worker
finishes within `resend` seconds is sent again (the first is left to run whenever it can).

The length is the broker's own count of ready messages, from a passive declaration of the queue
through the project's app: the same call for Redis (the list's length) and RabbitMQ (messages
ready); a queue the broker does not hold (Redis drops an empty list) counts 0.

With --beat-liveness-file (written by Beat's probe, roles/celery_beat), it also serves when Beat last
sent a periodic task (celery_beat_last_sent_timestamp_seconds) and the shortest interval of Beat's
schedule (celery_beat_shortest_interval_seconds): Beat silent for twice that interval is an alert.
celery_beat_probe_reported is 0 while the file is missing (Beat never started here) and 1 once read;
the other two are served from the file (the interval not for a schedule without entries).

Run by <prefix>-heartbeat.service (roles/celery_heartbeat) in the release, with the app's
environment: the project's own Celery app routes and declares the queues as its workers do.
"""

import argparse
import json
import time

import amqp.exceptions
import kombu.exceptions
from celery.app.utils import find_app
from kombu import Queue
from prometheus_client import Gauge, start_http_server

NOT_THERE = (amqp.exceptions.NotFound, kombu.exceptions.ChannelError)


def log(message: str) -> None:
    print(message, flush=True)


def queue_lengths(app, queues: list[str]) -> dict[str, int]:
    """Ready messages in each queue, by a passive declaration (one channel each: RabbitMQ closes
    the channel of a declaration that finds no queue)."""
    lengths = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)
        for name in queues:
            queue = app.amqp.queues.get(name) or Queue(name)
            channel = connection.channel()
            try:
                lengths[name] = queue.bind(channel).queue_declare(passive=True).message_count
            except NOT_THERE:
                lengths[name] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # already closed by the broker
                    pass
    return lengths


class BeatLiveness:
    """The Beat probe's file as gauges: whether it was read, when Beat last sent a task, and the
    shortest interval of its schedule (the last two once the file says)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reported = Gauge(
            "celery_beat_probe_reported",
            "1 when Beat's probe file could be read, 0 while it is missing or unreadable",
        )
        self.gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, documentation: str) -> Gauge:
        if name not in self.gauges:
            self.gauges[name] = Gauge(name, documentation)
        return self.gauges[name]

    def update(self) -> None:
        try:
            with open(self.path) as handle:
                state = json.load(handle)
        except FileNotFoundError:
            self.reported.set(0)
            return
        except (OSError, ValueError) as error:
            log(f"heartbeat: {self.path}: {error!r}")
            self.reported.set(0)
            return
        self.reported.set(1)
        if state.get("last_sent") is not None:
            self.gauge(
                "celery_beat_last_sent_timestamp_seconds",
                "When Celery Beat last sent a periodic task (Unix time)",
            ).set(float(state["last_sent"]))
        if state.get("shortest_interval") is not None:
            self.gauge(
                "celery_beat_shortest_interval_seconds",
                "The shortest time between two runs of an entry of Beat's schedule",
            ).set(float(state["shortest_interval"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="the Celery app (celery -A value)")
    parser.add_argument("--queue", action="append", required=True, help="a queue (repeat)")
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--resend", type=float, default=300.0)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9808)
    parser.add_argument("--beat-liveness-file", help="the file Beat's probe writes")
    args = parser.parse_args()
    beat = BeatLiveness(args.beat_liveness_file) if args.beat_liveness_file else None

    app = find_app(args.app)
    age = Gauge(
        "celery_queue_heartbeat_age_seconds",
        "Seconds since the last heartbeat that a worker of the queue finished was sent",
        ["queue"],
    )
    length = Gauge(
        "celery_queue_length", "Messages ready in the queue, waiting for a worker", ["queue"]
    )
    start_http_server(args.port, addr=args.address)
    log(f"heartbeat: every {args.interval:g} s into {', '.join(args.queue)}")

    started = time.time()
    # Until a queue's first heartbeat finishes, its age counts from this start.
    finished_sent_at = dict.fromkeys(args.queue, started)
    in_flight: dict[str, tuple[object, float]] = {}
    while True:
        now = time.time()
        for queue in args.queue:
            result, sent_at = in_flight.get(queue, (None, 0.0))
            if result is not None:
                try:
                    if result.ready():
                        finished_sent_at[queue] = sent_at
                        result.forget()
                        result = None
                except Exception as error:  # the backend is away: try again next round
                    log(f"heartbeat: {queue}: result backend: {error!r}")
            if result is None or now - sent_at > args.resend:
                try:
                    in_flight[queue] = (
                        app.send_task("celery.accumulate", args=("heartbeat", queue), queue=queue),
                        now,
                    )
                except Exception as error:  # the broker is away: try again next round
                    log(f"heartbeat: {queue}: send: {error!r}")
                    if result is None:
                        in_flight.pop(queue, None)
            age.labels(queue).set(round(now - finished_sent_at[queue], 3))
        try:
            for queue, count in queue_lengths(app, args.queue).items():
                length.labels(queue).set(count)
        except Exception as error:  # the broker is away: the lengths go stale, the ages grow
            log(f"heartbeat: queue lengths: {error!r}")
        if beat is not None:
            beat.update()
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
