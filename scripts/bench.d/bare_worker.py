"""One Celery worker of the project's own app and settings with the command line of the deployed
worker of a queue (pool, concurrency, prefetch, recycling, time limits, log level), but without what
the monitoring reads: no task events (Flower's task views and metrics, the alerts built on them) and
no STARTED state in the result backend (what a status view reports while a task runs). Run by
scripts/bench through the release's bin/run on a worker host, consuming a queue of its own: set
beside the deployed layout and the library-default worker, it shows what those two features cost per
task, apart from the queue's layout and the project's other settings (late acknowledgement included).

Remote control is off too: Flower broadcasts `enable_events` every few seconds, which would turn the
task events back on.
"""

import argparse
import os
import sys


def deployed_arguments(queue):
    """The options of the running worker that consumes queue (systemd or supervisor runs it: the
    same command line), without its queue and node name."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = [arg.decode() for arg in cmdline.read().split(b"\0") if arg]
        except OSError:
            continue
        if "worker" in argv and f"--queues={queue}" in argv:
            options = argv[argv.index("worker") + 1 :]
            return [arg for arg in options if not arg.startswith(("--queues=", "--hostname="))]
    raise SystemExit(f"bare_worker: no running worker consumes queue {queue}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celery-app", required=True)
    parser.add_argument("--like", required=True, help="the deployed queue whose worker to copy")
    parser.add_argument("--queue", required=True, help="the queue this worker consumes")
    options = parser.parse_args()
    copied = deployed_arguments(options.like)

    # bin/run starts in the release directory: the project and the settings overlay are there.
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    from celery.app.utils import find_app

    app = find_app(options.celery_app)
    # A project's settings reach Celery under their namespace (CELERY_...), which Celery reads
    # before the plain name: override both spellings.
    off = ("worker_send_task_events", "task_track_started", "worker_enable_remote_control")
    for key in off:
        app.conf[key] = False
        if app.namespace:
            app.conf[f"{app.namespace}_{key}".upper()] = False
    for key in off:
        if app.conf[key]:
            raise SystemExit(f"bare_worker: could not turn {key} off")
    print(f"bare_worker: the options of {options.like}'s worker: {' '.join(copied)}", flush=True)
    node = os.uname().nodename
    app.worker_main(
        ["worker", f"--queues={options.queue}", f"--hostname=bench-bare@{node}", *copied]
    )


if __name__ == "__main__":
    main()
