"""Generate a third-party Django + Celery project, laid out the way Django's and Celery's docs lay it
out, for the deployment to take as it is:

    python third_party_project.py DEST [--override-default-queue QUEUE]

- `django-admin startproject proj DEST`: settings.py exactly as startproject writes it (sqlite,
  DEBUG on, a django-insecure key, no STATIC_ROOT, empty ALLOWED_HOSTS);
- proj/celery.py as in Celery's "First steps with Django", plus `include=["proj.tasks"]` so that the
  tasks module is found without touching INSTALLED_APPS; proj/__init__.py imports the app;
- proj/tasks.py: a few @shared_task functions the tests call; proj/views.py: one view that enqueues a
  drill task (POST /enqueue/), for the drills' HTTP clients;
- requirements.txt (Django and Celery only: no gunicorn, flower, psycopg or Redis client) and the
  lock that `scripts/lock` makes of it.

--lock-hashes makes the lock carry every package's hashes (scripts/lock with DCS_LOCK_HASHES=1).
--override-default-queue appends `app.conf.update(CELERY_TASK_DEFAULT_QUEUE=QUEUE)` to celery.py, an
override that takes effect over Django's settings: the mistake the deployment's effective-settings
check must catch. Does nothing when DEST already holds a lock.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CELERY_PY = """\
import os

from celery import Celery

# Set the default Django settings module for the 'celery' program.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj", include=["proj.tasks"])

# Using a string here means the worker doesn't have to serialize
# the configuration object to child processes.
# - namespace='CELERY' means all celery-related configuration keys
#   should have a `CELERY_` prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")

# Load task modules from all registered Django apps.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
"""

# The project's one view of its own: the fault drills' HTTP clients enqueue through it (a web request
# that publishes, as a shop's checkout does). A test project: no authentication.
VIEWS_PY = """\
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .tasks import record


@csrf_exempt
@require_POST
def enqueue(request):
    \"\"\"Queue one drill task; 202 once the broker has taken it.\"\"\"
    result = record.delay(
        request.POST["drill"], int(request.POST["seq"]), float(request.POST.get("seconds", 0))
    )
    return JsonResponse({"id": result.id}, status=202)
"""

URLS_PY_TAIL = """
from proj.views import enqueue  # noqa: E402

urlpatterns += [path("enqueue/", enqueue)]
"""

INIT_PY = """\
# This will make sure the app is always imported when
# Django starts so that shared_task will use this app.
from .celery import app as celery_app

__all__ = ("celery_app",)
"""

TASKS_PY = '''\
import os
import socket
import time

from celery import shared_task


@shared_task
def add(x, y):
    return x + y


@shared_task(bind=True)
def where(self):
    """Which worker ran this task, and when it started."""
    return {"hostname": self.request.hostname, "started_at": time.time()}


@shared_task(bind=True)
def flaky(self, failures=3, countdown=1):
    """Fail and retry `failures` times with a countdown, then succeed."""
    if self.request.retries < failures:
        raise self.retry(countdown=countdown, max_retries=failures)
    return {"retries": self.request.retries}


@shared_task
def record(drill, seq, seconds=0.0):
    """A fault drill's task, counted in PostgreSQL: each run adds a "start" event, then (in one
    transaction) claims (drill, seq) in drill_done, whose primary key lets a redelivered task complete
    only once, and adds a "done" event saying where this code came from and which host ran it."""
    from django.db import connection, transaction

    host = socket.gethostname()
    with transaction.atomic(), connection.cursor() as cursor:
        # One creator at a time: concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL.
        cursor.execute("SELECT pg_advisory_xact_lock(4242)")
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS drill_event (drill text, seq int, event text, host text,"
            " code text, at timestamptz DEFAULT now())"
        )
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS drill_done (drill text, seq int, PRIMARY KEY (drill, seq))"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO drill_event (drill, seq, event, host) VALUES (%s, %s, 'start', %s)",
            [drill, seq, host],
        )
    time.sleep(seconds)
    code = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO drill_done (drill, seq) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [drill, seq],
        )
        cursor.execute(
            "INSERT INTO drill_event (drill, seq, event, host, code) VALUES (%s, %s, 'done', %s, %s)",
            [drill, seq, host, code],
        )
    return seq
'''


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dest", type=Path)
    parser.add_argument("--override-default-queue", default="")
    parser.add_argument(
        "--lock-hashes", action="store_true", help="a lock with hashes (DCS_LOCK_HASHES=1)"
    )
    args = parser.parse_args()
    dest: Path = args.dest
    if (dest / "requirements.lock").exists():
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "django", "startproject", "proj", str(dest)], check=True)
    package = dest / "proj"
    (package / "celery.py").write_text(
        CELERY_PY
        + (
            "\n# This project insists on its own default queue. A namespaced key set here wins over\n"
            "# Django's settings (a plain `app.conf.task_default_queue = ...` would not).\n"
            f"app.conf.update(CELERY_TASK_DEFAULT_QUEUE={args.override_default_queue!r})\n"
            if args.override_default_queue
            else ""
        )
    )
    (package / "__init__.py").write_text(INIT_PY)
    (package / "tasks.py").write_text(TASKS_PY)
    (package / "views.py").write_text(VIEWS_PY)
    with (package / "urls.py").open("a") as urls:
        urls.write(URLS_PY_TAIL)
    (dest / "requirements.txt").write_text("Django==6.0.10\ncelery==5.6.3\n")
    env = {**os.environ, "DCS_LOCK_HASHES": "1" if args.lock_hashes else "0"}
    subprocess.run([str(ROOT / "scripts" / "lock"), str(dest)], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
