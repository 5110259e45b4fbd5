"""The benchmark of the local stack (inventories/local): deploy times and what the deployed stack
carries, printed as one table and written as JSON. Run by scripts/bench; see README "Benchmark".

Steps (each bounded in count and time; only the local containers are targeted):
  1. cold converge: the stack's containers re-created, then site.yml (image, venv, wheelhouse cached);
  2. idempotent re-run of site.yml (its PLAY RECAP must say changed=0);
  3. release deploy: playbooks/deploy.yml with a new release id while a client polls /healthz
     through nginx; every failed request is counted;
  4. HTTP: GET /livez through nginx -> Gunicorn at 4 and 16 keep-alive clients;
  5. Celery end to end (scripts/bench.d/celery_load.py on the web host): the deployed per-queue
     layout; then the same worker options and project settings without task events and the STARTED
     state (bench.d/bare_worker.py), on a queue of its own; then one plain `celery worker` with
     library defaults on the worker host, same broker; then each client (the project's app, the
     plain one) publishing alone into a queue that nothing consumes;
     meanwhile the CPU the machine and each container spent (cgroup v1 cpuacct) and each systemd
     unit's processes on them (/proc), so the table names what the machine's cores went to;
  6. the broker's own ceiling (redis-benchmark on the broker host, Redis brokers).
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "scripts" / "bench.d"
sys.path.insert(0, str(HELPERS))
from celery_load import percentiles  # noqa: E402 - the hosts' helper and this one share it

REMOTE_DIR = "/var/tmp/dcs-bench"
# The queue of bench.d/bare_worker.py: the deployed layout's options without task events and STARTED.
BARE_QUEUE = "dcs-bench-bare"
# A queue nothing consumes, one per client: a client's own publish rate (celery_load.py
# --alone-queue deletes it).
ALONE_QUEUE = "dcs-bench-unconsumed-{}"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# Extra variables of every run (--broker).
EXTRA_VARS = []


def playbook(args):
    """Run ansible-playbook; returns (seconds, changed count from the recap)."""
    began = time.monotonic()
    result = subprocess.run(
        ["ansible-playbook", *args, *EXTRA_VARS], cwd=ROOT, text=True, capture_output=True
    )
    seconds = time.monotonic() - began
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-6000:] + result.stderr[-3000:])
        raise SystemExit(
            f"bench: ansible-playbook {' '.join(args)} failed (rc {result.returncode})"
        )
    changed = sum(
        int(n) for n in re.findall(r"\bchanged=(\d+)", result.stdout.split("PLAY RECAP")[-1])
    )
    return round(seconds, 1), changed


class Client:
    """One keep-alive HTTPS connection to nginx on the published port (self-signed certificate)."""

    def __init__(self, port):
        self.port = port
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.connection = None

    def get(self, path, timeout=5):
        try:
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=self.context, timeout=timeout
                )
            self.connection.request("GET", path, headers={"Host": "localhost"})
            response = self.connection.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.connection.close()
                self.connection = None
            return response.status
        except (OSError, http.client.HTTPException):
            if self.connection is not None:
                self.connection.close()
            self.connection = None
            return None


def probe_during(port, action, interval=0.02):
    """Poll /healthz while action() runs: requests sent and failed (not 200, or no answer)."""
    stop = threading.Event()
    counts = {"requests": 0, "failed": 0, "failures": []}
    began = time.monotonic()

    def poll():
        client = Client(port)
        while not stop.is_set():
            sent = time.monotonic()
            status = client.get("/healthz")
            counts["requests"] += 1
            if status != 200:
                counts["failed"] += 1
                # When into the run and what came back (None: no answer within the timeout).
                counts["failures"].append(
                    {
                        "at_s": round(sent - began, 2),
                        "status": status,
                        "took_s": round(time.monotonic() - sent, 2),
                    }
                )
            time.sleep(interval)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        outcome = action()
    finally:
        stop.set()
        thread.join()
    return outcome, counts


def http_load(port, path, clients, seconds):
    deadline = time.monotonic() + seconds

    def worker(_):
        client, latencies, failed = Client(port), [], 0
        while time.monotonic() < deadline:
            began = time.perf_counter()
            status = client.get(path)
            latencies.append((time.perf_counter() - began) * 1000)
            failed += status != 200
        return latencies, failed

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(worker, range(clients)))
    elapsed = time.monotonic() - began
    latencies = [value for values, _ in outcomes for value in values]
    return {
        "clients": clients,
        "requests": len(latencies),
        "failed": sum(failed for _, failed in outcomes),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": percentiles(latencies),
    }


def docker(*argv):
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout


def stack_settings():
    """Hosts, paths and names of the local stack, as the inventory resolves them."""
    query = (
        "{{ {'web': groups['web'][0], 'broker': groups['broker'][0],"
        " 'scheduler': groups['scheduler'][0],"
        " 'worker': groups['workers'] | map('extract', hostvars)"
        " | selectattr('celery_worker_queues', 'contains', celery_default_queue)"
        " | map(attribute='inventory_hostname') | first,"
        " 'port': (hostvars[groups['web'][0]].dcs_local_published_ports[0] | split(':'))[1] | int,"
        " 'app_root': app_root, 'celery_app': app_celery_app, 'queue': celery_default_queue,"
        " 'redis_port': dcs_redis_port | int, 'redis_admin': dcs_redis_admin_password,"
        " 'broker_kind': dcs_broker} | to_json }}"
    )
    result = subprocess.run(
        [
            "ansible",
            "localhost",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"msg={query}",
            "-o",
            *EXTRA_VARS,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(json.loads(result.stdout.split("=>", 1)[1])["msg"])


def ship_helpers(host):
    archive = subprocess.run(
        ["tar", "-C", str(HELPERS), "-cf", "-", "."], capture_output=True, check=True
    ).stdout
    subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            host,
            "sh",
            "-c",
            f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR} && tar -C {REMOTE_DIR} -xf - && chmod -R a+rX {REMOTE_DIR}",
        ],
        input=archive,
        check=True,
    )


CGROUP_CPU = Path("/sys/fs/cgroup/cpuacct/cpuacct.usage")

# Run inside a host: CPU seconds so far of each process of a systemd unit, named by its unit and
# whether it is the unit's main process (a Celery worker's main process apart from its pool,
# Gunicorn's master from its workers). A process that ended between two samples is missing: the
# host's total (its container's cgroup) covers it.
UNIT_CPU = r"""
import json, os, re
tick = os.sysconf("SC_CLK_TCK")
seconds = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        cgroup = open(f"/proc/{pid}/cgroup").read()
    except OSError:
        continue
    unit = re.search(r"name=systemd:.*/([^/]+\.service)$", cgroup, re.M)
    if not unit:
        continue
    role = "main" if stat[1] == "1" else "pool"
    seconds[pid] = [f"{unit.group(1)} {role}", (int(stat[11]) + int(stat[12])) / tick]
print(json.dumps(seconds))
"""


def cpu_usage(containers):
    """CPU seconds so far: the machine's (cgroup v1 cpuacct), each host's (its container's cgroup;
    containers maps host -> container id) and each unit process's on each host (UNIT_CPU), keyed by
    (host, pid) with the line it counts towards."""
    machine = int(CGROUP_CPU.read_text()) / 1e9
    hosts, processes = {}, {}
    for host, container_id in containers.items():
        total = CGROUP_CPU.parent / "docker" / container_id / "cpuacct.usage"
        if total.exists():
            hosts[host] = int(total.read_text()) / 1e9
        for pid, (key, seconds) in json.loads(
            docker("exec", host, "python3", "-c", UNIT_CPU)
        ).items():
            processes[(host, pid)] = (f"{host} {key}", seconds)
    return machine, hosts, processes


def cpu_during(hosts, action):
    """Run action(); return its result and the CPU it cost: the machine's busy share of its cores,
    and core-seconds per host and per unit, the largest first (a host's own line is what ran there
    outside the units listed: `docker exec`, processes that ended). Without cgroup v1's cpuacct
    hierarchy (cgroup v2), no CPU."""
    if not CGROUP_CPU.exists():
        return action(), {}
    containers = {host: docker("inspect", "--format", "{{.Id}}", host).strip() for host in hosts}
    (machine, totals, processes), began = cpu_usage(containers), time.monotonic()
    result = action()
    (machine_after, totals_after, processes_after), wall = (
        cpu_usage(containers),
        time.monotonic() - began,
    )
    spent = {}
    for process, (line, seconds) in processes_after.items():
        spent[line] = spent.get(line, 0) + seconds - processes.get(process, (line, 0))[1]
    for host, seconds in totals_after.items():
        units = sum(v for k, v in spent.items() if k.startswith(f"{host} "))
        spent[host] = seconds - totals.get(host, 0) - units
    top = sorted(((k, round(v, 2)) for k, v in spent.items() if v >= 0.05), key=lambda kv: -kv[1])
    return result, {
        "wall_s": round(wall, 1),
        "machine_busy": round((machine_after - machine) / (wall * os.cpu_count()), 2),
        "core_seconds": dict(top),
    }


def celery_bench(settings, count, sleep_count):
    web, worker = settings["web"], settings["worker"]
    run = f"{settings['app_root']}/bin/run"
    for host in (web, worker):
        ship_helpers(host)

    def load(layout, queue, *extra):
        argv = [run, "python", f"{REMOTE_DIR}/celery_load.py", "--layout", layout, "--queue", queue]
        # 500 tasks one at a time (250 of 10 ms): the p99 is then the 5th slowest, not the slowest.
        argv += ["--idle", "500", "--count", str(count), "--sleep-count", str(sleep_count), *extra]
        return json.loads(docker("exec", web, *argv))

    hosts = sorted({web, worker, settings["broker"], settings["scheduler"]})
    log(f"Celery, deployed layout: queue {settings['queue']} on {worker}")
    deployed, deployed_cpu = cpu_during(
        hosts,
        lambda: load("deployed", settings["queue"], "--celery-app", settings["celery_app"]),
    )

    def with_worker(docker_options, argv, pattern, layout, queue, *extra):
        """Start a worker on the worker host (argv, run detached), measure `load` on its queue, stop
        every process whose command line matches pattern (the worker and its pool)."""
        docker("exec", "-d", *docker_options, worker, *argv)
        try:
            return cpu_during(hosts, lambda: load(layout, queue, *extra))
        finally:
            subprocess.run(["docker", "exec", worker, "pkill", "-TERM", "-f", pattern], check=False)

    log(f"Celery, the deployed worker's options without task events and STARTED on {worker}")
    bare, bare_cpu = with_worker(
        [],
        [run, "python", f"{REMOTE_DIR}/bare_worker.py", "--celery-app", settings["celery_app"]]
        + ["--like", settings["queue"], "--queue", BARE_QUEUE],
        "bare_worker.py",
        "deployed",
        BARE_QUEUE,
        "--celery-app",
        settings["celery_app"],
    )
    log(f"Celery, one plain worker with library defaults on {worker}")
    # Library defaults: the default queue ("celery"), which nothing else uses here.
    default, default_cpu = with_worker(
        ["-e", f"PYTHONPATH={REMOTE_DIR}"],
        [run, "celery", "-A", "bench_default", "worker", "-l", "warning", "-n", "bench-default@%h"],
        "bench_default worker",
        "default",
        "celery",
    )
    log("Celery, each client publishing alone into a queue that nothing consumes")
    key = "noop_published_alone_per_s"
    for layout, report, extra in (
        ("deployed", deployed, ["--celery-app", settings["celery_app"]]),
        ("default", default, []),
    ):
        queue = ALONE_QUEUE.format(layout)
        report[key] = load(layout, queue, "--alone-queue", queue, *extra)[key]
    return {
        "deployed": {**deployed, "cpu": deployed_cpu},
        "deployed_without_events": {**bare, "cpu": bare_cpu},
        "default": {**default, "cpu": default_cpu},
    }


def redis_ceiling(broker_host, port, admin_password):
    """redis-benchmark LPUSH/RPOP (1 KiB, 50 clients) on the broker host. redis-benchmark takes a
    password only on its command line: it gets a throwaway ACL user's, never the admin's (the admin
    password reaches redis-cli through REDISCLI_AUTH, which redis-cli reads from the environment)."""
    throwaway = secrets.token_hex(16)

    def cli(*argv):
        subprocess.run(
            [
                "docker",
                "exec",
                "-e",
                f"REDISCLI_AUTH={admin_password}",
                broker_host,
                "redis-cli",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                *argv,
            ],
            capture_output=True,
            text=True,
            check=True,
        )

    cli("ACL", "SETUSER", "dcs-bench", "on", f">{throwaway}", "~mylist", "+@all")
    try:
        output = subprocess.run(
            [
                "docker",
                "exec",
                broker_host,
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--user",
                "dcs-bench",
                "-a",
                throwaway,
                "-t",
                "lpush,rpop",
                "-n",
                "100000",
                "-c",
                "50",
                "-d",
                "1024",
                "-q",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        cli("DEL", "mylist")
        cli("ACL", "DELUSER", "dcs-bench")
    rates = dict(re.findall(r"(\w+): ([\d.]+) requests per second", output))
    if not rates:
        raise SystemExit(f"bench: redis-benchmark printed no rates: {output[-500:]}")
    return {name.lower(): float(value) for name, value in rates.items()}


def table(report):
    rows = [("broker", report["broker"])]
    rows.append(("cold converge (site.yml)", f"{report['deploy'].get('cold_s', '-')} s"))
    rows.append(
        (
            "idempotent re-run",
            f"{report['deploy']['rerun_s']} s (changed={report['deploy']['rerun_changed']})",
        )
    )
    release = report["deploy"]["release"]
    rows.append(
        (
            "release deploy (deploy.yml)",
            f"{release['seconds']} s, {release['failed']} of {release['requests']} /healthz requests failed",
        )
    )
    for load in report["http"]:
        latency = load["latency_ms"]
        rows.append(
            (
                f"HTTP /livez, {load['clients']} clients",
                f"{load['requests_per_s']} req/s, p50 {latency['p50']} ms, p99 {latency['p99']} ms",
            )
        )
    celery = report["celery"]
    # Reports written before the layout without task events and STARTED have no such entry.
    layouts = [
        (key, name)
        for key, name in (
            ("deployed", "deployed"),
            ("deployed_without_events", "deployed, no events/STARTED"),
            ("default", "default worker"),
        )
        if key in celery
    ]
    for task in ("noop", "sleep_10ms"):
        default = celery["default"][task]
        for key, name in layouts:
            data = celery[key][task]
            rows.append(
                (
                    f"Celery {task}, {name}",
                    f"publish {data['published_per_s']}/s, consume {data['consumed_per_s']}/s, "
                    f"idle send->start p50/p99 {data['idle_send_to_start_ms']['p50']}/"
                    f"{data['idle_send_to_start_ms']['p99']} ms, send->result p50/p95/p99 "
                    f"{data['idle_send_to_result_ms']['p50']}/{data['idle_send_to_result_ms']['p95']}/"
                    f"{data['idle_send_to_result_ms']['p99']} ms",
                )
            )
        for key, name in layouts[:-1]:
            data = celery[key][task]
            ratio = data["consumed_per_s"] / default["consumed_per_s"]
            after = [
                data.get("consumed_after_publish_per_s"),
                default.get("consumed_after_publish_per_s"),
            ]
            line = f"{ratio:.2f}x consumed tasks/s"
            if all(after):
                line += f"; after the last publish {after[0]}/s vs {after[1]}/s: {after[0] / after[1]:.2f}x"
            rows.append((f"Celery {task}, {name} / default", line))
    alone = {key: celery[key].get("noop_published_alone_per_s") for key in ("deployed", "default")}
    if all(alone.values()):
        rows.append(
            (
                "Celery noop, one client publishing alone",
                f"project's app {alone['deployed']}/s, plain app {alone['default']}/s "
                "(nothing consumes: a consumed rate above it needs more clients)",
            )
        )
    for key, name in layouts:
        cpu = celery[key].get("cpu")
        if cpu:
            spent = ", ".join(f"{k} {v}" for k, v in list(cpu["core_seconds"].items())[:5])
            rows.append(
                (
                    f"Celery CPU, {name} (both tasks)",
                    f"{cpu['wall_s']} s, machine {cpu['machine_busy']:.0%} busy; core-s: {spent}",
                )
            )
    ceiling = report.get("broker_ceiling", {})
    for name in ("lpush", "rpop"):
        if name in ceiling:
            rows.append((f"broker ceiling: redis-benchmark {name}", f"{ceiling[name]:.0f} req/s"))
    if "publish_per_s" in ceiling:
        rows.append(
            (
                f"broker ceiling: kombu, {ceiling['queue_type']} queue",
                f"publish {ceiling['publish_per_s']:.0f}/s, with confirms "
                f"{ceiling['publish_confirmed_per_s']:.0f}/s, consume {ceiling['consume_per_s']:.0f}/s",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main():
    parser = argparse.ArgumentParser(description="Benchmark the local stack (inventories/local).")
    parser.add_argument("--no-cold", action="store_true", help="skip re-creating the containers")
    parser.add_argument("--count", type=int, default=2000, help="no-op tasks per layout (burst)")
    parser.add_argument(
        "--sleep-count", type=int, default=600, help="10 ms tasks per layout (burst)"
    )
    parser.add_argument("--http-seconds", type=float, default=10)
    parser.add_argument("--output", default=str(ROOT / ".cache" / "bench"))
    parser.add_argument(
        "--broker",
        choices=["redis", "rabbitmq"],
        help="deploy (and measure) with this broker instead of the inventory's dcs_broker",
    )
    options = parser.parse_args()
    if options.broker:
        EXTRA_VARS.extend(["-e", f"dcs_broker={options.broker}"])

    settings = stack_settings()
    report = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "broker": settings["broker_kind"],
        "deploy": {},
    }
    began = time.monotonic()

    if not options.no_cold:
        log("cold converge: re-creating the local containers")
        subprocess.run(["scripts/down"], cwd=ROOT, check=True, capture_output=True)
        playbook(["playbooks/local/containers.yml"])
        report["deploy"]["cold_s"], _ = playbook(["site.yml"])
        log(f"cold converge {report['deploy']['cold_s']} s")
    else:
        log("converging first (the timed re-run must find the stack converged)")
        playbook(["site.yml"])
    log("idempotent re-run")
    report["deploy"]["rerun_s"], report["deploy"]["rerun_changed"] = playbook(["site.yml"])
    log("release deploy with /healthz polled meanwhile")
    release_id = "bench-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    (seconds, _), counts = probe_during(
        settings["port"],
        lambda: playbook(["playbooks/deploy.yml", "-e", f"app_release_id={release_id}"]),
    )
    report["deploy"]["release"] = {"seconds": seconds, "release": release_id, **counts}

    log("HTTP load on /livez")
    report["http"] = [
        http_load(settings["port"], "/livez", clients, options.http_seconds) for clients in (4, 16)
    ]
    report["celery"] = celery_bench(settings, options.count, options.sleep_count)
    if settings["broker_kind"] == "redis":
        log("broker ceiling: redis-benchmark")
        report["broker_ceiling"] = redis_ceiling(
            settings["broker"], settings["redis_port"], settings["redis_admin"]
        )
    else:
        log("broker ceiling: kombu publisher and consumer on a quorum queue")
        run = f"{settings['app_root']}/bin/run"
        report["broker_ceiling"] = json.loads(
            docker("exec", settings["web"], run, "python", f"{REMOTE_DIR}/amqp_ceiling.py")
        )
    report["seconds"] = round(time.monotonic() - began, 1)

    output = Path(options.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"bench-{report['started'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nbench: {report['seconds']} s in all; JSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
