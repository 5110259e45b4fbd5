"""Converging converges to the inventory: the scheduler moves to another host and back, and exactly
one Beat runs across the hosts each time; the host it left keeps nothing of Beat or Flower.
(Runs after the other tests of the scenario, which see the original layout.)"""

import json

import pytest
from conftest import APP, APP_HOSTS, CELERY_APP, SCHEDULER, UNIT_PREFIX, WORKERS, host, http, secret
from dcs_testlib import inventory_with_groups, run_playbook

BEAT_FILES = (
    f"/etc/systemd/system/{UNIT_PREFIX}-beat.service",
    f"/etc/systemd/system/{UNIT_PREFIX}-flower.service",
    f"/etc/supervisor/conf.d/{UNIT_PREFIX}-beat.conf",
    f"/etc/supervisor/conf.d/{UNIT_PREFIX}-flower.conf",
)


def beats() -> dict[str, int]:
    pattern = f"'[-]A {CELERY_APP} beat'"
    return {
        name: len(host(name).run(f"pgrep -u {APP} -f -- {pattern}").stdout.split())
        for name in APP_HOSTS
    }


def converge(inventory: str = "") -> None:
    # The plays of the tiers whose hosts change: the release, web (its site) and scheduler.
    result = run_playbook("site.yml", {}, inventory=inventory, options=("--tags", "web,scheduler"))
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    target = WORKERS[-1]
    inventory = inventory_with_groups(
        tmp_path_factory.mktemp("moved"), {"scheduler": (SCHEDULER, target)}
    )
    converge(inventory)
    yield target
    converge()
    assert beats() == {name: int(name == SCHEDULER) for name in APP_HOSTS}


def test_beat_runs_once_on_the_new_scheduler_only(moved):
    assert beats() == {name: int(name == moved) for name in APP_HOSTS}


def test_the_old_scheduler_keeps_no_beat_or_flower_unit_or_file(moved):
    old = host(SCHEDULER)
    for path in BEAT_FILES:
        assert not old.file(path).exists, path
    units = old.check_output(f"systemctl list-units --all --plain --no-legend '{UNIT_PREFIX}-*'")
    assert "beat" not in units and "flower" not in units
    # Its site keeps Django (it is still a web host) but no longer proxies Flower.
    assert "/flower/" not in old.file(f"/etc/nginx/sites-available/{APP}.conf").content_string


def test_flower_answers_on_the_new_scheduler(moved):
    status, text = http(
        host(moved), "GET", "/flower/api/workers", basic=f"admin:{secret('flower_password')}"
    )
    assert status == 200, text
    assert json.loads(text)
