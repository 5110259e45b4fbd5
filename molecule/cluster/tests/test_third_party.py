"""A project nobody here wrote, deployed without touching its code: `django-admin startproject`
settings, Celery's documented celery.py, a tasks module and a lock (prepare.yml generates it)."""

import os
import shlex
from pathlib import Path

from conftest import APP, QUEUE_NODES, ROOT, send

SOURCE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "proj"


def test_the_project_settings_are_exactly_as_startproject_wrote_them(web):
    deployed = web.file(f"{ROOT}/current/proj/settings.py").content_string
    assert deployed == (SOURCE / "proj" / "settings.py").read_text()
    assert "DEBUG = True" in deployed
    assert "ALLOWED_HOSTS = []" in deployed
    assert "sqlite3" in deployed


def test_a_task_round_trip_returns_the_result_from_its_queues_worker(web):
    assert send(web, "proj.tasks.add", args=(2, 3)) == 5
    assert send(web, "proj.tasks.where")["hostname"] in QUEUE_NODES["jobs"]


def test_the_bundle_brings_what_it_runs_into_the_release(web):
    lock = (SOURCE / "requirements.lock").read_text().lower()
    for package in ("gunicorn", "flower", "psycopg", "redis"):
        assert f"\n{package}==" not in lock, f"the project's own lock lists {package}"
    imported = web.run(f"{ROOT}/bin/run python -c 'import gunicorn, flower, psycopg, redis'")
    assert imported.rc == 0, imported.stderr


def test_the_after_build_hook_ran_in_the_release_as_root(web, worker, scheduler):
    for host in (web, worker, scheduler):
        built = host.file(f"{ROOT}/current/built-with-django.txt")
        assert built.user == "root"
        assert built.content_string.strip() == "6.0.10"


def test_the_before_switch_hook_ran_in_the_new_release_as_the_app_user(web, worker, scheduler):
    for host in (web, worker, scheduler):
        record = host.file(f"/var/lib/{APP}/before-switch.txt")
        assert record.user == APP
        assert record.content_string.strip() == host.file(f"{ROOT}/current").linked_to


def test_its_lock_carries_hashes_and_the_hosts_install_only_wheels_that_match(worker):
    """The project's lock has hashes (scripts/lock with DCS_LOCK_HASHES=1): the control node downloaded
    in pip's hash-checking mode, recorded each wheel's SHA-256 in the host lock, and the hosts install
    with --require-hashes: a wheel changed after that is refused."""
    assert "--hash=sha256:" in (SOURCE / "requirements.lock").read_text()
    (wheelhouse,) = worker.check_output(f"ls -d {ROOT}/wheelhouse/*/").split()
    lock = worker.file(f"{wheelhouse}requirements.lock").content_string
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert pins and all(" --hash=sha256:" in line for line in pins), lock
    script = (
        "set -e; rm -rf /var/tmp/tampered /var/tmp/tamper-venv; "
        f"cp -r {wheelhouse} /var/tmp/tampered; "
        'wheel=$(ls /var/tmp/tampered/*.whl | head -n 1); printf x >> "$wheel"; '
        "python3 -m venv /var/tmp/tamper-venv; "
        "/var/tmp/tamper-venv/bin/pip install --no-index --find-links /var/tmp/tampered "
        "--require-hashes -r /var/tmp/tampered/requirements.lock"
    )
    result = worker.run(f"bash -c {shlex.quote(script)}")
    assert result.rc != 0
    assert "DO NOT MATCH THE HASHES" in result.stdout + result.stderr
