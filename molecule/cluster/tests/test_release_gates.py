"""A release that would not run as the inventory says never goes live: each case runs
playbooks/deploy.yml as an operator would, and every app host must still run its previous release."""

import os
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import APP, QUEUE_NODES, QUEUES, ROOT, WEB, send, with_app
from dcs_testlib import run_playbook

SOURCE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "proj"
APP_HOSTS = ("web", "worker", "scheduler")


@pytest.fixture
def releases(request):
    """The release each app host runs now; the test asserts it is the same afterwards."""
    hosts = {tier: request.getfixturevalue(tier) for tier in APP_HOSTS}

    def current():
        return {tier: host.file(f"{ROOT}/current").linked_to for tier, host in hosts.items()}

    before = current()
    yield current
    assert current() == before
    # ...and the stack still works on it.
    assert send(hosts["web"], "proj.tasks.where")["hostname"] in QUEUE_NODES["jobs"]


def failed(result, message: str) -> None:
    assert result.returncode != 0, result.stdout[-3000:]
    assert message in result.stdout, result.stdout[-6000:]


def test_a_release_whose_celery_app_overrides_the_default_queue_stops_the_deploy(
    tmp_path, releases
):
    project = tmp_path / "proj"
    shutil.copytree(SOURCE, project)
    with (project / "proj" / "celery.py").open("a") as celery_py:
        celery_py.write('\napp.conf.update(CELERY_TASK_DEFAULT_QUEUE="celery")\n')
    result = run_playbook("playbooks/deploy.yml", {"app_source_dir": str(project)})
    failed(
        result,
        "Celery setting task_default_queue: the release runs with 'celery', "
        "the inventory wants 'background'",
    )


def test_a_release_whose_exchange_rabbitmq_holds_in_another_form_stops_the_deploy(worker, releases):
    declare = (
        "from kombu import Exchange\n"
        "with app.connection_for_write() as connection:\n"
        "    Exchange('extra', type='direct', channel=connection.default_channel).{}()\n"
        "print('true')"
    )
    with_app(worker, declare.format("declare"))
    try:
        queues = {**QUEUES, "extra": {**QUEUES["jobs"], "routes": []}}
        # Every worker host lists the new queue too, or preflight stops first (no consumer).
        result = run_playbook(
            "playbooks/deploy.yml", {"celery_queues": queues, "celery_worker_queues": list(queues)}
        )
    finally:
        with_app(worker, declare.format("delete"))
    failed(
        result,
        f"RabbitMQ already has exchange 'extra' in vhost '{APP}' with type 'direct'; "
        "the new release declares it with 'topic'",
    )


def test_a_failing_hook_before_the_switch_stops_the_deploy(releases):
    result = run_playbook(
        "playbooks/deploy.yml",
        {
            # A setting changes, so this is a new release, whose before_switch hook fails.
            "app_django_settings_extra": {"DCS_TEST_RELEASE": "with a failing hook"},
            "app_hooks": {"before_switch": [{"command": "echo refusing; exit 3"}]},
        },
    )
    failed(result, "refusing")


def test_a_release_with_a_deployment_check_warning_stops_the_deploy_with_tls_on(releases):
    # HSTS off: `check --deploy` warns (security.W004); with TLS on a warning stops the deploy.
    result = run_playbook(
        "playbooks/deploy.yml", {"app_django_settings_extra": {"SECURE_HSTS_SECONDS": 0}}
    )
    failed(result, "security.W004")


def test_a_web_host_failing_its_health_check_stops_the_rolling_deploy_there(web, worker, scheduler):
    """The first batch (the web host) switches to a new release but does not pass its health check
    (a path that answers 404): the play stops, the other app hosts keep the release they ran. The
    next good deploy brings the web host back in line."""
    hosts = {"web": web, "worker": worker, "scheduler": scheduler}
    before = {name: h.file(f"{ROOT}/current").linked_to for name, h in hosts.items()}
    # The project's before_switch hook records where it ran, on every host (it runs before any batch
    # switches); put the records back afterwards for test_third_party.py.
    hook_record = f"/var/lib/{APP}/before-switch.txt"
    records = {name: h.file(hook_record).content_string for name, h in hosts.items()}
    result = run_playbook(
        "playbooks/deploy.yml",
        {
            "app_django_settings_extra": {"DCS_TEST_RELEASE": "fails its health check"},
            "app_health_check_path": "/no-such-health-check/",
            "app_health_check_retries": 3,
        },
    )
    failed(result, "Wait until the health check answers through nginx")
    assert web.file(f"{ROOT}/current").linked_to != before["web"]
    assert worker.file(f"{ROOT}/current").linked_to == before["worker"]
    assert scheduler.file(f"{ROOT}/current").linked_to == before["scheduler"]
    # The release every host ran before, by its id, on the one host that left it: it switches back.
    result = run_playbook(
        "playbooks/deploy.yml",
        {"app_release_id": Path(before["web"]).name},
        options=("--limit", WEB),
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert {name: h.file(f"{ROOT}/current").linked_to for name, h in hosts.items()} == before
    assert send(web, "proj.tasks.where")["hostname"] in QUEUE_NODES["jobs"]
    for name, h in hosts.items():
        h.run_expect([0], f"printf %s {shlex.quote(records[name])} > {hook_record}")
