"""The restore drill on the stack: orders placed through the app, a backup by its timer's unit,
a recorded time, more orders, the database host's data directory deleted; playbooks/restore.yml
brings back every order (the latest state), then only the orders up to the recorded time; the app
serves again by itself. Counts are the app's own rows."""

import shlex
import time

import dcs_testlib
import pytest
from conftest import APP, DATABASE, SCENARIO_VARS, host, http

STANZA = SCENARIO_VARS.get("dcs_backup_stanza", "main")
# This run's orders only: a second verify on the same hosts counts afresh.
BUYER = f"restore-drill-{time.strftime('%H%M%S')}@example.com"
FIRST, THEN = 5, 3


@pytest.fixture(scope="module")
def db():
    return host(DATABASE)


def sql(db, query: str) -> str:
    return db.check_output(
        f"cd /tmp && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {shlex.quote(APP)} "
        f"-c {shlex.quote(query)}"
    )


def orders(db) -> int:
    # The table lives in the app role's own schema (roles/postgresql), not on postgres' search path.
    schema = sql(
        db, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'orders_order'"
    )
    return int(sql(db, f"SELECT count(*) FROM \"{schema}\".orders_order WHERE email = '{BUYER}'"))


def place_orders(api, count: int):
    for _ in range(count):
        api.post("/api/orders/", {"email": BUYER, "total": "9.99"})


def destroy_the_data(db):
    """What a lost disk leaves: PostgreSQL stopped and its data directory empty."""
    data = sql(db, "SHOW data_directory")
    # The cluster's own unit: stopping postgresql.service only propagates the stop, without waiting.
    db.check_output("systemctl stop 'postgresql@*.service'")
    assert db.run(f"test -e {shlex.quote(data)}/postmaster.pid").rc != 0
    db.check_output(f"find {shlex.quote(data)} -mindepth 1 -delete")


def restore(**extra_vars) -> float:
    began = time.monotonic()
    result = dcs_testlib.run_playbook("playbooks/restore.yml", extra_vars, timeout=300)
    assert result.returncode == 0, result.stdout
    return time.monotonic() - began


def test_a_restore_brings_back_every_order_then_the_orders_up_to_a_point_in_time(web, api, db):
    place_orders(api, FIRST)
    db.check_output("systemctl start pgbackrest-backup@diff.service")
    time.sleep(1)
    between = sql(db, "SELECT now()")
    time.sleep(1)
    place_orders(api, THEN)
    # What a disaster may take is only WAL not yet archived: switch and push it, as check does.
    db.check_output(f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert orders(db) == FIRST + THEN

    destroy_the_data(db)
    latest = restore()
    after_latest = orders(db)
    destroy_the_data(db)
    point_in_time = restore(dcs_restore_target=between)
    after_point_in_time = orders(db)
    dcs_testlib.drill_report(
        f"drill restore: placed {FIRST}+{THEN}, latest {after_latest} in {latest:.0f} s, "
        f"at {between} {after_point_in_time} in {point_in_time:.0f} s"
    )
    assert after_latest == FIRST + THEN
    assert after_point_in_time == FIRST

    # The app serves again by itself, and takes new orders on the new timeline.
    deadline = time.monotonic() + 60
    while (status := http(web, "GET", "/healthz")[0]) != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert status == 200
    place_orders(api, 1)
    assert orders(db) == FIRST + 1
