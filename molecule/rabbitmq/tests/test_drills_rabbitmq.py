"""Fault drills with RabbitMQ (quorum queues) and the third-party project: a worker killed as a
whole, and the broker restarting under publish and consume load. The project's drill task
(proj.tasks.record) appends "start <seq>" and "done <seq>" to /var/lib/<app>/drill-<name>.log on
the worker host; the drills count sent, done, duplicated and lost from it. RabbitMQ redelivers an
unacknowledged message as soon as its consumer's connection dies: no visibility timeout to wait for.
"""

import collections
import json
import shlex
import time

import pytest
from conftest import APP, CELERY_APP, QUEUES, UNIT_PREFIX, WORKER, host, with_app

# Each run's drill names are its own: a second verify on the same hosts counts afresh.
RUN = time.strftime("%H%M%S")
QUEUE = "jobs"  # where proj.tasks.* go (inventory/group_vars/third_party.yml)


def unit() -> str:
    return f"{UNIT_PREFIX}-worker@{QUEUE}.service"


def log_lines(drill: str) -> list[str]:
    log = host(WORKER).file(f"/var/lib/{APP}/drill-{drill}.log")
    return log.content_string.split("\n") if log.exists else []


def counts(drill: str, sent: int) -> dict[str, int]:
    lines = log_lines(drill)
    done = collections.Counter(line.split()[1] for line in lines if line.startswith("done "))
    numbers = {
        "sent": sent,
        "done": len(done),
        "duplicated": sum(1 for times in done.values() if times > 1),
        "lost": sent - len(done),
        "executions": sum(1 for line in lines if line.startswith("start ")),
    }
    print(f"drill {drill}: " + ", ".join(f"{key} {value}" for key, value in numbers.items()))
    return numbers


def wait_for(drill: str, prefix: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({line for line in log_lines(drill) if line.startswith(prefix)}) >= count:
            return
        time.sleep(0.5)


def send(drill: str, count: int, seconds: float) -> None:
    with_app(
        host(WORKER),
        f"[app.send_task('proj.tasks.record', args=[{drill!r}, seq, {seconds!r}])"
        f" for seq in range({count})]\nprint(json.dumps({count}))",
    )


@pytest.mark.parametrize("how", ["unit", "main-pid"])
def test_a_worker_killed_as_a_whole_has_its_task_delivered_again_and_finished_once(how):
    """SIGKILL to every process of the unit (systemctl kill), or to the worker's main process only
    (its pool children follow it): RabbitMQ hands the unacknowledged task to the restarted worker."""
    worker = host(WORKER)
    drill = f"kill-{how}-{RUN}"
    send(drill, 1, 6)
    wait_for(drill, "start ", 1, 60)
    if how == "unit":
        worker.run_expect([0], f"systemctl kill --signal KILL {unit()}")
    else:
        pid = worker.check_output(f"systemctl show --property=MainPID --value {unit()}")
        worker.run_expect([0], f"kill -KILL {pid}")
    wait_for(drill, "done ", 1, 90)
    assert counts(drill, 1) == {"sent": 1, "done": 1, "duplicated": 0, "lost": 0, "executions": 2}
    assert worker.service(unit()).is_running


_PUBLISHER = """
import json, time
from celery.app.utils import find_app
app = find_app({celery_app!r})
sent, errors, slowest = 0, {{}}, 0.0
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    began = time.monotonic()
    try:
        app.send_task("proj.tasks.record", args=[{drill!r}, sent, 0.2])
    except Exception as error:
        errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
    sent += 1
    slowest = max(slowest, time.monotonic() - began)
    time.sleep(0.2)
print(json.dumps({{"sent": sent, "errors": errors, "slowest_s": round(slowest, 1)}}))
"""


def test_a_broker_restart_under_publish_and_consume_load_loses_no_task(broker):
    """The app's client publishes 5 tasks a second for 20 s while RabbitMQ restarts: every publish
    returns (the retry policy waits for the broker; confirms make it durable), every task finishes,
    duplicates at most a prefetch window."""
    worker = host(WORKER)
    drill = f"broker-restart-{RUN}"
    code = _PUBLISHER.format(celery_app=CELERY_APP, seconds=20, drill=drill)
    out = f"/var/tmp/publisher-{drill}.out"
    worker.run_expect(
        [0],
        f"rm -f {out}; DJANGO_APP_RUN_AS={APP} nohup /srv/{APP}/bin/run python -c "
        f"{shlex.quote(code)} > {out} 2>&1 &",
    )
    time.sleep(4)
    broker.run_expect([0], "systemctl restart rabbitmq-server")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and '"sent"' not in worker.file(out).content_string:
        time.sleep(1)
    published = json.loads(worker.file(out).content_string.strip().splitlines()[-1])
    sent = published["sent"]
    wait_for(drill, "done ", sent, 120)
    numbers = counts(drill, sent)
    print(f"drill {drill}: publisher {published}")
    assert published["errors"] == {}, published
    window = QUEUES[QUEUE]["concurrency"] * QUEUES[QUEUE]["prefetch_multiplier"]
    assert numbers["lost"] == 0 and numbers["done"] == sent, numbers
    assert numbers["duplicated"] <= window, numbers
