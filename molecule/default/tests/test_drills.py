"""Fault drills on the running stack (Redis broker, the reference app): each breaks something real,
with tasks in flight, and counts what became of them. A drill task (diagnostics.tasks.drill) writes
its start and its finish to PostgreSQL (diagnostics.DrillRun), so every count survives the fault:

    sent        tasks the drill sent
    done        tasks that finished (completions >= 1)
    duplicated  tasks that finished more than once
    lost        tasks that never finished

A task cut short (a killed process, a stop) is delivered again and counts one more execution, not
one more completion. The counts are printed (pytest -s, and the scenario log) and asserted exactly.
"""

import json
import shlex
import subprocess
import time

import dcs_testlib
import pytest
from conftest import (
    APP,
    APP_HOSTS,
    DATABASE,
    QUEUE_HOST,
    QUEUES,
    ROOT,
    SCENARIO_VARS,
    UNIT_PREFIX,
    host,
    http,
    journal,
    secret,
)

# Each run's drill names are its own: a second verify on the same hosts counts afresh.
RUN = time.strftime("%H%M%S")
REPORTS = "reports"  # concurrency 1, one worker host of its own: the drills know who runs what
NOTIFICATIONS = "notifications"


def unit(queue: str) -> str:
    return f"{UNIT_PREFIX}-worker@{queue}.service"


def django(on, body: str):
    """Run `body` with Django set up on `on` as the app user; returns its last line as JSON."""
    code = (
        "import json, os, sys\nsys.path.insert(0, os.getcwd())\nimport django\ndjango.setup()\n"
        "from celery.app.utils import find_app\nfrom diagnostics.models import DrillRun\n"
        f"app = find_app({APP!r})\n{body}"
    )
    result = dcs_testlib.python(on, code, APP, user=APP)
    assert result.rc == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def send(on, drill: str, queue: str, seconds: float, count: int = 1, **options) -> list[str]:
    drill = f"{drill}-{RUN}"
    return django(
        on,
        f"ids = [app.send_task('diagnostics.tasks.drill', args=[{drill!r}, seq, {seconds!r}],"
        f" queue={queue!r}, **{options!r}).id for seq in range({count})]\n"
        "print(json.dumps(ids))",
    )


def runs(on, drill: str) -> dict[int, dict]:
    """seq -> {executions, completions, code_dirs} of the drill's tasks."""
    drill = f"{drill}-{RUN}"
    rows = django(
        on,
        f"print(json.dumps(list(DrillRun.objects.filter(drill={drill!r})"
        ".values('seq', 'executions', 'completions', 'code_dirs'))))",
    )
    return {row.pop("seq"): row for row in rows}


def wait_for(on, drill: str, until, timeout: float = 120) -> dict[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        state = runs(on, drill)
        if until(state) or time.monotonic() > deadline:
            return state
        time.sleep(1)


def counts(state: dict[int, dict], sent: int) -> dict[str, int]:
    done = [row for row in state.values() if row["completions"] >= 1]
    return {
        "sent": sent,
        "done": len(done),
        "duplicated": sum(1 for row in done if row["completions"] > 1),
        "lost": sent - len(done),
        "executions": sum(row["executions"] for row in state.values()),
    }


def report(drill: str, numbers: dict) -> dict:
    dcs_testlib.drill_report(
        f"drill {drill}: " + ", ".join(f"{key} {value}" for key, value in numbers.items())
    )
    return numbers


def main_pid(on, name: str) -> int:
    return int(on.check_output(f"systemctl show --property=MainPID --value {shlex.quote(name)}"))


def all_done(count: int):
    return lambda state: sum(1 for row in state.values() if row["completions"] >= 1) >= count


def started(count: int):
    return lambda state: sum(1 for row in state.values() if row["executions"] >= 1) >= count


@pytest.fixture(scope="module")
def reports_host():
    return host(QUEUE_HOST[REPORTS])


@pytest.fixture(scope="module")
def notifications_host():
    return host(QUEUE_HOST[NOTIFICATIONS])


def test_a_task_whose_pool_process_is_killed_runs_again_and_finishes_once(web, reports_host):
    """kill -9 of the prefork child running the task: the worker sees WorkerLostError and, with late
    acknowledgement and reject_on_worker_lost, hands the message back at once; it runs again."""
    send(web, "child-kill", REPORTS, 6)
    assert started(1)(wait_for(web, "child-kill", started(1), 60))
    reports_host.run_expect(
        [0], f"pkill --signal KILL --parent {main_pid(reports_host, unit(REPORTS))}"
    )
    numbers = report("child-kill", counts(wait_for(web, "child-kill", all_done(1), 90), 1))
    assert numbers == {"sent": 1, "done": 1, "duplicated": 0, "lost": 0, "executions": 2}


def test_a_stop_under_work_lets_short_tasks_finish_and_hands_long_ones_back(
    web, notifications_host
):
    """systemctl stop while a short (4 s) and a long task (the shutdown timeout + 10 s) run: the
    worker stops consuming, the short one finishes within the shutdown timeout, the long one is
    cancelled and goes back to the broker; nothing is SIGKILLed. Started again, the worker finishes
    the long one: each once."""
    name = unit(NOTIFICATIONS)
    timeout = int(
        QUEUES[NOTIFICATIONS].get("shutdown_timeout", SCENARIO_VARS["celery_soft_shutdown_timeout"])
    )
    send(web, "stop-short", NOTIFICATIONS, 4)
    send(web, "stop-long", NOTIFICATIONS, timeout + 10)
    wait_for(web, "stop-long", started(1), 60)
    assert started(1)(runs(web, "stop-short"))
    began = time.monotonic()
    try:
        notifications_host.run_expect([0], f"systemctl stop {name}")
        took = time.monotonic() - began
        log = journal(notifications_host, name, 80)
        short = counts(runs(web, "stop-short"), 1)
    finally:
        notifications_host.run_expect([0], f"systemctl start {name}")
    assert short == {"sent": 1, "done": 1, "duplicated": 0, "lost": 0, "executions": 1}
    # Bounded by the shutdown timeout (plus the cold shutdown), not by the long task.
    assert timeout <= took < timeout + 15, log
    assert "Killing process" not in log and "SIGKILL" not in log, log
    long = report("stop", counts(wait_for(web, "stop-long", all_done(1), 150), 1))
    assert long == {"sent": 1, "done": 1, "duplicated": 0, "lost": 0, "executions": 2}
    dcs_testlib.drill_report(
        f"drill stop: systemctl stop took {took:.1f} s (shutdown timeout {timeout} s)"
    )


def test_a_task_over_its_hard_time_limit_is_killed_once_and_not_delivered_again(web):
    """prefork (the one pool that enforces limits): a 30 s task that ignores its soft limit (2 s) is
    killed at its hard limit (4 s), fails with TimeLimitExceeded and is acknowledged: not handed
    back in a loop."""
    (task_id,) = django(
        web,
        f"print(json.dumps([app.send_task('diagnostics.tasks.drill', args=['hard-limit-{RUN}', 0, 30],"
        f" kwargs={{'ignore_soft_limit': True}}, queue={REPORTS!r}, time_limit=4,"
        " soft_time_limit=2).id]))",
    )
    state = django(
        web,
        f"r = app.AsyncResult({task_id!r})\nr.get(timeout=60, propagate=False)\n"
        "print(json.dumps([r.state, type(r.result).__name__]))",
    )
    assert state == ["FAILURE", "TimeLimitExceeded"]
    time.sleep(10)  # a redelivery would have started by now (the worker is idle)
    # Not done, by design: killed once, failed, and never run again.
    numbers = report(
        "hard-limit (killed at its limit, as it must be)", counts(runs(web, "hard-limit"), 1)
    )
    assert numbers == {"sent": 1, "done": 0, "duplicated": 0, "lost": 1, "executions": 1}


_PUBLISHER = r"""
import json, os, ssl, sys, threading, time, urllib.error, urllib.request
token, drill, rate, stop_file = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
statuses, slowest, lock = {}, [0.0], threading.Lock()

def post(seq):
    body = json.dumps({"task": "diagnostics.tasks.drill", "args": [drill, seq, 0.2]}).encode()
    request = urllib.request.Request("https://localhost/api/tasks/", data=body, method="POST")
    request.add_header("Authorization", "Bearer " + token)
    request.add_header("Content-Type", "application/json")
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=90, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except Exception as error:
        status = type(error).__name__
    with lock:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        slowest[0] = max(slowest[0], time.monotonic() - began)

threads = []
while not os.path.exists(stop_file):
    thread = threading.Thread(target=post, args=(len(threads),))
    thread.start()
    threads.append(thread)
    time.sleep(1 / rate)
for thread in threads:
    thread.join()
print(json.dumps({"sent": len(threads), "statuses": statuses, "slowest_s": round(slowest[0], 1)}))
"""


class Publisher:
    """Requests that enqueue drill tasks through the task API (nginx, Gunicorn, Django, the broker)
    from the web host, `rate` a second, from start() until stop(); stop() returns the HTTP counts."""

    def __init__(self, on, drill: str, rate: float = 5):
        self.on, self.drill = on, drill
        self.base = f"/var/tmp/publisher-{drill}"
        args = (secret("app_task_api_token"), f"{drill}-{RUN}", str(rate), f"{self.base}.stop")
        self.command = f"python3 -c {shlex.quote(_PUBLISHER)} {' '.join(map(shlex.quote, args))}"

    def start(self) -> "Publisher":
        self.on.run_expect([0], f"rm -f {self.base}.stop {self.base}.out")
        self.on.run_expect([0], f"nohup {self.command} > {self.base}.out 2>&1 &")
        return self

    def stop(self, timeout: float = 120) -> dict:
        self.on.run_expect([0], f"touch {self.base}.stop")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.on.file(f"{self.base}.out")
            if out.exists and out.content_string.strip():
                return json.loads(out.content_string.strip().splitlines()[-1])
            time.sleep(1)
        raise AssertionError(
            f"the publisher did not finish: {self.on.file(self.base + '.out').content_string}"
        )


def held_by_redis(on, drill: str) -> set[int]:
    """Seqs of the drill's tasks in Redis's `unacked` hash: delivered to a worker, not acknowledged."""
    drill = f"{drill}-{RUN}"
    return set(
        django(
            on,
            "with app.connection_for_write() as conn:\n"
            "    held = conn.default_channel.client.hvals('unacked')\n"
            "args = [json.loads(v)[0]['headers'].get('argsrepr', '') for v in held]\n"
            f"print(json.dumps([int(a.split(',')[1]) for a in args if {drill!r} in a]))",
        )
    )


def test_a_broker_restart_under_publish_and_consume_load_fails_no_request_and_loses_no_task(
    web, broker, notifications_host
):
    """Requests enqueue drill tasks through the API at 5 a second while Redis is down for 3 s:
    publishing retries until the broker is back (no failed request), consuming resumes, and every task
    finishes. The messages a worker had reserved when Redis went away it cannot hand back to a broker
    that is down: they stay in Redis's `unacked` hash, which kombu would restore only after the
    visibility timeout (2 h). The worker host's watcher (<prefix>-redis-unacked.service) sees the
    broker come back as a new server process and restores them at once. A task that finished while
    Redis was down could not be acknowledged: it runs again (a duplicate), at most a prefetch window.
    (RabbitMQ redelivers by itself: molecule/cluster/tests/test_drills_cluster.py.)"""
    watcher = f"{UNIT_PREFIX}-redis-unacked.service"
    since = notifications_host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    publisher = Publisher(web, "broker-restart").start()
    time.sleep(4)
    broker.run_expect([0], "systemctl stop redis-server && sleep 3 && systemctl start redis-server")
    time.sleep(6)
    http_counts = publisher.stop()
    sent = http_counts["sent"]
    state = wait_for(web, "broker-restart", all_done(sent), 60)
    held = held_by_redis(web, "broker-restart")
    restores = notifications_host.check_output(
        f"journalctl --unit {watcher} --since {shlex.quote(since)} --no-pager --output cat"
        " | grep -c 'is a new server process' || true"
    )
    numbers = report(
        "broker-restart",
        {
            **counts(state, sent),
            "still_held": len(held),
            "watcher_restores": restores,
            **http_counts,
        },
    )
    assert http_counts["statuses"] == {"202": sent}, numbers
    assert numbers["lost"] == 0 and numbers["done"] == sent and not held, numbers
    assert restores == "1", journal(notifications_host, watcher)
    window = QUEUES[NOTIFICATIONS]["concurrency"] * QUEUES[NOTIFICATIONS]["prefetch_multiplier"]
    assert numbers["duplicated"] <= window, numbers


def test_a_database_restart_makes_healthz_fail_then_recover_and_db_tasks_retry(web):
    """PostgreSQL stops: /healthz answers 503 (not a hang, not a 500); drill tasks sent meanwhile fail
    on the database and retry; PostgreSQL starts again: /healthz recovers by itself and every task
    finishes once."""
    database = host(DATABASE)
    database.run_expect([0], "systemctl stop postgresql")
    try:
        # postgresql.service is Debian's umbrella unit: the cluster's own unit stops with it
        # (PartOf=), and CI once found /healthz still answered by the database right after the stop.
        # The drill starts once the server refuses connections.
        database.run_expect(
            [0], "for i in $(seq 50); do pg_isready -q || exit 0; sleep 0.2; done; exit 1"
        )
        status, text = http(web, "GET", "/healthz")
        assert status == 503, text
        assert json.loads(text)["checks"]["database"] == "fail"
        send(web, "db-restart", NOTIFICATIONS, 0, 5)
        time.sleep(5)
    finally:
        database.run_expect([0], "systemctl start postgresql")
    deadline = time.monotonic() + 60
    while (status := http(web, "GET", "/healthz")[0]) != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert status == 200
    numbers = report("db-restart", counts(wait_for(web, "db-restart", all_done(5), 90), 5))
    assert numbers["done"] == 5 and numbers["lost"] == 0 and numbers["duplicated"] == 0, numbers


def test_a_worker_host_restart_is_a_clean_shutdown_that_brings_every_unit_back(web, reports_host):
    """`docker restart` of a worker host while a 3 s task runs: the container's stop signal is
    systemd's own (SIGRTMIN+3), so systemd stops every unit in order (the worker's bounded shutdown:
    the task finishes) instead of ignoring SIGTERM until docker's SIGKILL; after the boot every
    queue's unit runs again."""
    name = QUEUE_HOST[REPORTS]
    send(web, "host-restart", REPORTS, 3)
    wait_for(web, "host-restart", started(1), 60)
    began = time.monotonic()
    subprocess.run(["docker", "restart", name], check=True, capture_output=True, timeout=180)
    took = time.monotonic() - began
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = reports_host.run(f"systemctl is-active {unit(REPORTS)}").stdout.strip()
        if state == "active":
            break
        time.sleep(1)
    assert state == "active"
    numbers = report("host-restart", counts(wait_for(web, "host-restart", all_done(1), 90), 1))
    dcs_testlib.drill_report(f"drill host-restart: docker restart took {took:.1f} s")
    assert numbers == {"sent": 1, "done": 1, "duplicated": 0, "lost": 0, "executions": 1}
    # A SIGKILL would have come after the container's stop timeout (90 s).
    assert took < 60


def test_every_app_unit_runs_its_release_directory_not_current(web, reports_host):
    """Units and the Gunicorn configuration name the release itself: a process started for one
    release keeps importing from it while the next one goes live."""
    release = web.file(f"{ROOT}/current").linked_to
    assert f"{ROOT}/releases/" in release
    for on, name in ((reports_host, unit(REPORTS)),):
        cwd = on.check_output(f"readlink /proc/{main_pid(on, name)}/cwd")
        assert cwd == release
    assert f'chdir = "{release}"' in web.file(f"/etc/{APP}/gunicorn.conf.py").content_string


def release_of(on) -> str:
    return on.file(f"{ROOT}/current").linked_to


@pytest.fixture(scope="module")
def released(web):
    """A new release (same code under another release id) deployed with playbooks/deploy.yml while
    requests enqueue tasks: (release before, release after, HTTP counts, the deploy's output)."""
    before = release_of(web)
    publisher = Publisher(web, "release", rate=2).start()
    result = dcs_testlib.run_playbook(
        "playbooks/deploy.yml", {"app_release_id": f"drill-{int(time.time())}"}
    )
    http_counts = publisher.stop()
    assert result.returncode == 0, result.stdout[-6000:]
    return before, release_of(web), http_counts


def test_a_release_under_load_fails_no_request_loses_no_task_and_mixes_no_code(web, released):
    """Gunicorn switches to the new release by a handover (a second instance on the same socket
    serves while the service restarts), the workers restart with a bounded shutdown: no request fails, no task is lost, and every task ran in a
    process whose code came from one release only."""
    before, after, http_counts = released
    assert after != before
    sent = http_counts["sent"]
    state = wait_for(web, "release", all_done(sent), 120)
    numbers = report("release", {**counts(state, sent), **http_counts})
    assert http_counts["statuses"] == {"202": sent}, numbers
    window = QUEUES[NOTIFICATIONS]["concurrency"] * QUEUES[NOTIFICATIONS]["prefetch_multiplier"]
    assert numbers["lost"] == 0 and numbers["done"] == sent, numbers
    assert numbers["duplicated"] <= window, numbers
    code = [row["code_dirs"] for row in state.values()]
    assert all(len(dirs) == 1 and dirs[0] in (before, after) for dirs in code), code


def test_rollback_returns_every_app_host_to_the_previous_release_and_tasks_keep_flowing(
    web, released
):
    before, after, _ = released
    result = dcs_testlib.run_playbook("playbooks/rollback.yml", {})
    assert result.returncode == 0, result.stdout[-6000:]
    for name in APP_HOSTS:
        assert release_of(host(name)) == before, name
        assert host(name).file(f"{ROOT}/previous").linked_to == after, name
    status, _ = http(web, "GET", "/healthz")
    assert status == 200
    send(web, "rollback", NOTIFICATIONS, 0, 3)
    numbers = report("rollback", counts(wait_for(web, "rollback", all_done(3), 60), 3))
    assert numbers == {"sent": 3, "done": 3, "duplicated": 0, "lost": 0, "executions": 3}
    assert all(row["code_dirs"] == [before] for row in runs(web, "rollback").values())
