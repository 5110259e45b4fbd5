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
from conftest import APP, CELERY_APP, INVENTORY, QUEUES, UNIT_PREFIX, WORKER, host, with_app
from dcs_testlib import run_playbook

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
import json, os, time
from celery.app.utils import find_app
app = find_app({celery_app!r})
sent, errors, slowest = 0, {{}}, 0.0
end = time.monotonic() + {seconds}
while time.monotonic() < end and not os.path.exists({stop_file!r}):
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
    code = _PUBLISHER.format(celery_app=CELERY_APP, seconds=20, drill=drill, stop_file="")
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


_PROBE = r"""
import json, os, ssl, sys, time, urllib.error, urllib.request
stop_file, servers = sys.argv[1], sys.argv[2:]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
statuses, slowest, sent = {}, 0.0, 0
while not os.path.exists(stop_file):
    server = servers[sent % len(servers)]
    began = time.monotonic()
    try:
        with urllib.request.urlopen(f"https://{server}/admin/login/", timeout=60, context=context) as r:
            status = f"{server} {r.status}"
    except urllib.error.HTTPError as error:
        status = f"{server} {error.code}"
    except Exception as error:
        status = f"{server} {type(error).__name__}"
    statuses[status] = statuses.get(status, 0) + 1
    slowest = max(slowest, time.monotonic() - began)
    sent += 1
    time.sleep(0.1)
print(json.dumps({"sent": sent, "statuses": statuses, "slowest_s": round(slowest, 1)}))
"""


def test_a_rolling_release_over_two_web_hosts_fails_no_request_and_loses_no_task(scheduler):
    """deploy.yml (a new release) while a client on the scheduler asks both web hosts for a Django
    page and the app publishes tasks: the web hosts switch one batch after the other, each gated on
    its health check; no request fails, no task is lost, each task ran code from one release."""
    webs = INVENTORY.get_hosts("web")
    assert len(webs) == 2
    drill = f"rolling-{RUN}"
    stop = f"/var/tmp/{drill}.stop"
    probe_out = f"/var/tmp/probe-{drill}.out"
    probe = f"python3 -c {shlex.quote(_PROBE)} {stop} {' '.join(webs)}"
    scheduler.run_expect([0], f"rm -f {stop} {probe_out}; nohup {probe} > {probe_out} 2>&1 &")
    worker = host(WORKER)
    out = f"/var/tmp/publisher-{drill}.out"
    code = _PUBLISHER.format(celery_app=CELERY_APP, seconds=600, drill=drill, stop_file=stop)
    worker.run_expect(
        [0],
        f"rm -f {stop} {out}; DJANGO_APP_RUN_AS={APP} nohup /srv/{APP}/bin/run python -c "
        f"{shlex.quote(code)} > {out} 2>&1 &",
    )
    before = worker.file(f"/srv/{APP}/current").linked_to
    try:
        result = run_playbook("playbooks/deploy.yml", {"app_release_id": drill})
    finally:
        scheduler.run_expect([0], f"touch {stop}")
        worker.run_expect([0], f"touch {stop}")
    assert result.returncode == 0, result.stdout[-6000:]
    after = worker.file(f"/srv/{APP}/current").linked_to
    assert after != before
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        '"sent"' in worker.file(out).content_string
        and '"sent"' in scheduler.file(probe_out).content_string
    ):
        time.sleep(1)
    http_counts = json.loads(scheduler.file(probe_out).content_string.strip().splitlines()[-1])
    published = json.loads(worker.file(out).content_string.strip().splitlines()[-1])
    sent = published["sent"]
    wait_for(drill, "done ", sent, 120)
    numbers = counts(drill, sent)
    print(f"drill {drill}: requests {http_counts}, publisher {published}")
    assert {key.split()[0] for key in http_counts["statuses"]} == set(webs), http_counts
    assert all(key.endswith(" 200") for key in http_counts["statuses"]), http_counts
    assert published["errors"] == {}, published
    assert numbers["lost"] == 0 and numbers["done"] == sent, numbers
    code_dirs = {line.split()[2] for line in log_lines(drill) if line.startswith("done ")}
    assert code_dirs <= {before, after}, code_dirs
