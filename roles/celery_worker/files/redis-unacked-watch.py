"""Hand back to their queues the Celery tasks that a restart of the Redis broker left unacknowledged.

kombu's Redis transport keeps every message it delivers in the `unacked` hash (scored by delivery
time in `unacked_index`) until the worker acknowledges it. A worker that loses its connection hands
its reserved messages back itself, but only while Redis can take them: when Redis restarts, it
cannot, and they wait there for the visibility timeout (hours) although no worker holds them any
more (celery/celery#1307). This watcher holds a connection to the broker. When the connection drops
and the broker it reconnects to is a new server process, every message delivered before the drop is
an orphan (all connections of the old process died with it): it restores them to their queues, as
kombu's own visibility-timeout restore does, under kombu's lock.

A new server process is told from a network break by connection ids: Redis numbers connections from
1 at every start, so a reconnection whose id is not above every id seen before reached a new process.
A break that is not a restart restores nothing (other hosts' workers may still hold their messages),
and a restart the watcher misses (it was not running) leaves the visibility timeout to act.

Run by <prefix>-redis-unacked.service (roles/celery_worker) with the app's environment: it reads
CELERY_BROKER_URL, and needs only kombu and redis from the release's virtualenv.
"""

import os
import sys
import time

from kombu import Connection
from kombu.transport.redis import Mutex, MutexHeld
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A key nobody writes: the blocking read on it notices a dropped connection at once.
WATCH_KEY = "_dcs.unacked-watch"
# Seconds between samples of the server's connection counter (a new connection's id).
SAMPLE_EVERY = 10
# Seconds between attempts to reach the broker again.
RETRY_EVERY = 0.2
BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


def log(message: str) -> None:
    print(message, flush=True)


def new_connection_id(client) -> int:
    """The id Redis gives a connection opened now: its count of connections since it started. (A
    connection of its own, outside the client's pool, which counts every connection it ever made.)"""
    pool = client.connection_pool
    connection = pool.connection_class(**pool.connection_kwargs)
    try:
        connection.send_command("CLIENT", "ID")
        return int(connection.read_response())
    finally:
        connection.disconnect()


def wait_for_broker(client) -> int:
    while True:
        try:
            return new_connection_id(client)
        except BROKEN:
            time.sleep(RETRY_EVERY)


def restore_orphans(channel, before: float) -> int:
    """Restore every message delivered before `before` (a time) that is still unacknowledged."""
    client = channel.client
    while True:
        try:
            with Mutex(client, channel.unacked_mutex_key, channel.unacked_mutex_expire):
                tags = client.zrange(channel.unacked_index_key, "-inf", f"({before}", byscore=True)
                for tag in tags:
                    channel.qos.restore_by_tag(tag, client)
                return len(tags)
        except MutexHeld:
            # Another watcher (or a worker's own restore) holds the lock: what it leaves is ours.
            time.sleep(1)
        except BROKEN:
            time.sleep(RETRY_EVERY)


def main() -> int:
    connection = Connection(os.environ["CELERY_BROKER_URL"])
    if connection.transport.driver_type != "redis":
        log(f"the broker is not Redis ({connection.transport.driver_type}): nothing to watch")
        return 0
    connection.ensure_connection(
        max_retries=None, interval_start=1, interval_step=1, interval_max=5
    )
    channel = connection.default_channel
    client = channel.client
    highest = wait_for_broker(client)
    sampled = time.monotonic()
    log(f"watching the broker's connections (connection id {highest})")
    while True:
        try:
            client.brpop([WATCH_KEY], timeout=1)
            if time.monotonic() - sampled >= SAMPLE_EVERY:
                highest = max(highest, new_connection_id(client))
                sampled = time.monotonic()
        except BROKEN as error:
            dropped = time.time()
            log(f"lost the broker ({error.__class__.__name__}); waiting for it")
            reconnected = wait_for_broker(client)
            if reconnected <= highest:
                restored = restore_orphans(channel, dropped)
                log(
                    f"the broker is a new server process (connection id {reconnected}, "
                    f"{highest} seen before): restored {restored} unacknowledged messages "
                    "delivered before the restart to their queues"
                )
            else:
                log(f"the broker is back, the same server process (connection id {reconnected})")
            # Ids count from this server process's start on (a restart's included).
            highest = reconnected
            sampled = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
