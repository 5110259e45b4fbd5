"""Backups of the database container with pgBackRest: WAL archived into an encrypted repository,
full and differential backups on timers, retention applied, and a restore drill through
playbooks/restore.yml that counts rows: the latest state and a point in time in between."""

import json
import os
import shlex
import time

import dcs_testlib
import pytest
import testinfra
import yaml

DB_HOST = "dcs-postgresql-db"
SCENARIO = yaml.safe_load(
    open(os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "molecule.yml"))
)["provisioner"]["inventory"]["group_vars"]["database"]
STANZA = SCENARIO["pgbackrest_stanza"]
RETENTION_FULL = SCENARIO["pgbackrest_retention_full"]
DATABASE = "molecule_db"
testinfra_hosts = [f"ansible://{DB_HOST}"]


@pytest.fixture(scope="module")
def db():
    return testinfra.get_host(
        f"ansible://{DB_HOST}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


def sql(db, query: str) -> str:
    return db.check_output(
        f"cd /tmp && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {DATABASE} "
        f"-c {shlex.quote(query)}"
    )


def pgbackrest(db, *args: str) -> str:
    return db.check_output(
        f"cd /tmp && runuser -u postgres -- pgbackrest --stanza={STANZA} {' '.join(args)}"
    )


def info(db) -> dict:
    return json.loads(pgbackrest(db, "--output=json", "info"))[0]


def unit(db) -> str:
    return db.check_output(
        "systemctl list-units --plain --no-legend 'postgresql@*' | cut -d' ' -f1"
    )


def destroy_the_data(db):
    """What a lost disk leaves: PostgreSQL stopped and its data directory empty."""
    data = sql(db, "SHOW data_directory")
    db.check_output(f"systemctl stop {unit(db)}")
    db.check_output(f"find {shlex.quote(data)} -mindepth 1 -delete")
    assert db.run(f"test -e {shlex.quote(data)}/PG_VERSION").rc != 0


def restore(**extra_vars):
    return dcs_testlib.run_playbook("playbooks/restore.yml", extra_vars, timeout=300)


def test_the_repository_is_encrypted_and_the_configuration_readable_by_postgres_only(db):
    assert info(db)["cipher"] == "aes-256-cbc"
    conf = db.file("/etc/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "postgres", 0o640)


def test_postgresql_archives_every_wal_segment_into_the_repository(db):
    assert sql(db, "SHOW archive_mode") == "on"
    pgbackrest(db, "check")
    assert int(sql(db, "SELECT archived_count FROM pg_stat_archiver")) > 0
    assert sql(db, "SELECT failed_count FROM pg_stat_archiver") == "0"


@pytest.mark.parametrize("kind", ["full", "diff"])
def test_a_timer_takes_each_kind_of_backup(db, kind):
    timer = db.service(f"pgbackrest-{kind}.timer")
    assert timer.is_enabled and timer.is_running
    assert db.check_output(f"systemctl show -P Unit pgbackrest-{kind}.timer") == (
        f"pgbackrest-backup@{kind}.service"
    )


def test_retention_keeps_the_newest_full_backups_only(db):
    before = [backup["label"] for backup in info(db)["backup"] if backup["type"] == "full"]
    for _ in range(RETENTION_FULL):
        db.check_output("systemctl start pgbackrest-backup@full.service")
    fulls = [backup["label"] for backup in info(db)["backup"] if backup["type"] == "full"]
    assert len(fulls) == RETENTION_FULL
    assert not set(before) & set(fulls), "the older full backups were expired"


def test_restore_refuses_to_overwrite_a_running_server(db):
    result = restore()
    assert result.returncode != 0, result.stdout
    assert "a restore would overwrite its" in result.stdout
    assert db.service(unit(db)).is_running


def test_a_restore_drill_brings_back_the_latest_rows_and_a_point_in_time(db):
    sql(db, "CREATE TABLE orders (id serial PRIMARY KEY, placed_at timestamptz DEFAULT now())")
    sql(db, "INSERT INTO orders SELECT FROM generate_series(1, 5)")
    db.check_output("systemctl start pgbackrest-backup@diff.service")
    time.sleep(1)
    between = sql(db, "SELECT now()")
    time.sleep(1)
    sql(db, "INSERT INTO orders SELECT FROM generate_series(1, 3)")
    # The archive holds the last rows once their WAL segment is switched and pushed.
    pgbackrest(db, "check")

    destroy_the_data(db)
    began = time.monotonic()
    latest = restore()
    dcs_testlib.drill_report(f"restore of the latest: {time.monotonic() - began:.1f} s")
    assert latest.returncode == 0, latest.stdout
    assert sql(db, "SELECT count(*) FROM orders") == "8"

    destroy_the_data(db)
    began = time.monotonic()
    in_between = restore(dcs_restore_target=between)
    dcs_testlib.drill_report(f"restore to {between}: {time.monotonic() - began:.1f} s")
    assert in_between.returncode == 0, in_between.stdout
    assert sql(db, "SELECT count(*) FROM orders") == "5"
    # Promoted: it takes writes, and archiving goes on from the new timeline.
    sql(db, "INSERT INTO orders DEFAULT VALUES")
    pgbackrest(db, "check")


def test_a_forced_restore_replaces_a_running_server(db):
    rows = sql(db, "SELECT count(*) FROM orders")
    pgbackrest(db, "check")
    db.check_output("systemctl start pgbackrest-backup@diff.service")
    forced = restore(dcs_restore_force=True)
    assert forced.returncode == 0, forced.stdout
    assert sql(db, "SELECT count(*) FROM orders") == rows
