"""RabbitMQ's own ceiling from an app host, without Celery (run by scripts/bench through bin/run):
one kombu publisher into a throwaway quorum queue without and with publisher confirms, then one
consumer draining it. 1 KiB messages; the queue is deleted at the end. Prints one JSON document.

The broker URL is the app's (CELERY_BROKER_URL from the environment file that bin/run loads)."""

import argparse
import json
import os
import sys
import time

from kombu import Connection, Consumer, Exchange, Queue

QUEUE = "dcs-bench-ceiling"


def publish(url, queue, count, confirm):
    body = b"x" * 1024
    options = {"confirm_publish": True} if confirm else {}
    with Connection(url, transport_options=options) as connection:
        producer = connection.Producer()
        began = time.perf_counter()
        for _ in range(count):
            producer.publish(
                body,
                exchange="",
                routing_key=queue.name,
                serializer=None,
                content_type="application/octet-stream",
                content_encoding="binary",
                delivery_mode=2,
            )
        return round(count / (time.perf_counter() - began), 1)


def consume(url, queue, count, timeout):
    received = 0
    with Connection(url) as connection:
        channel = connection.channel()

        def on_message(_body, message):
            nonlocal received
            received += 1
            message.ack()

        consumer = Consumer(channel, queues=[queue], callbacks=[on_message], prefetch_count=200)
        consumer.consume()
        began = time.perf_counter()
        deadline = time.monotonic() + timeout
        while received < count and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=1)
            except TimeoutError:
                continue
        elapsed = time.perf_counter() - began
        consumer.cancel()
    return round(received / elapsed, 1), received


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="messages without confirms")
    parser.add_argument("--confirm-count", type=int, default=2000, help="messages with confirms")
    parser.add_argument("--timeout", type=float, default=120)
    options = parser.parse_args()

    url = os.environ["CELERY_BROKER_URL"]
    if not url.startswith(("amqp", "pyamqp")):
        sys.exit("amqp_ceiling: the broker is not RabbitMQ")
    queue = Queue(
        QUEUE,
        Exchange(""),
        routing_key=QUEUE,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    with Connection(url) as connection:
        queue(connection.default_channel).declare()
    try:
        report = {
            "queue_type": "quorum",
            "publish_per_s": publish(url, queue, options.count, confirm=False),
            "publish_confirmed_per_s": publish(url, queue, options.confirm_count, confirm=True),
        }
        total = options.count + options.confirm_count
        report["consume_per_s"], report["consumed"] = consume(url, queue, total, options.timeout)
    finally:
        with Connection(url) as connection:
            queue(connection.default_channel).delete()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
