"""A project nobody here wrote, deployed without touching its code: `django-admin startproject`
settings, Celery's documented celery.py, a tasks module and a lock (prepare.yml generates it)."""

import os
from pathlib import Path

from conftest import APP, ROOT, WORKER, send

SOURCE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "proj"


def test_the_project_settings_are_exactly_as_startproject_wrote_them(web):
    deployed = web.file(f"{ROOT}/current/proj/settings.py").content_string
    assert deployed == (SOURCE / "proj" / "settings.py").read_text()
    assert "DEBUG = True" in deployed
    assert "ALLOWED_HOSTS = []" in deployed
    assert "sqlite3" in deployed


def test_a_task_round_trip_returns_the_result_from_its_queues_worker(web):
    assert send(web, "proj.tasks.add", args=(2, 3)) == 5
    assert send(web, "proj.tasks.where")["hostname"] == f"jobs@{WORKER}"


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
