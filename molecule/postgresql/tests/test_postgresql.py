"""The database container serves the application role to the allowed client only, with scram-sha-256."""

import os
import shlex

import pytest
import testinfra

DB_HOST = "dcs-postgresql-db"
# The PostgreSQL each Debian release ships: the role installs that one and no other.
POSTGRESQL_OF_DEBIAN = {"12": "15", "13": "17"}
_DEBIAN = (
    testinfra.get_host(
        f"ansible://{DB_HOST}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )
    .file("/etc/debian_version")
    .content_string.split(".")[0]
)
VERSION = POSTGRESQL_OF_DEBIAN[_DEBIAN]
UNIT = f"postgresql@{VERSION}-main"
DATABASE = "molecule_db"
USER = "molecule_user"
# The scenario's throwaway test password (molecule.yml), not a secret.
PASSWORD = "molecule-throwaway-test-password"
MAX_CONNECTIONS = "50"

testinfra_hosts = [f"ansible://{DB_HOST}"]


def _other(name: str) -> testinfra.host.Host:
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@pytest.fixture(scope="module")
def app_host() -> testinfra.host.Host:
    return _other("dcs-postgresql-app")


@pytest.fixture(scope="module")
def other_host() -> testinfra.host.Host:
    return _other("dcs-postgresql-other")


def _sql(host, query: str, database: str = "postgres") -> str:
    """Run a query as the postgres superuser over the Unix socket (peer) and return its output."""
    cmd = f"cd /tmp && runuser -u postgres -- psql -XAtq -d {database} -c {shlex.quote(query)}"
    return host.check_output(cmd)


def _connect(client, query: str, password: str = PASSWORD):
    """Connect over TCP to the database server as the application role."""
    return client.run(
        f"PGPASSWORD={shlex.quote(password)} PGCONNECT_TIMEOUT=5 "
        f"psql -XAtq -h {DB_HOST} -U {USER} -d {DATABASE} -c {shlex.quote(query)}"
    )


def test_cluster_runs_and_starts_at_boot(host):
    cluster = host.service(UNIT)
    if not cluster.is_running:
        print(host.run(f"journalctl -u {UNIT} -n 50 --no-pager").stdout)
    assert cluster.is_running
    assert host.service("postgresql").is_enabled


def test_server_listens_on_its_network_address(host):
    address = host.interface("eth0").addresses[0]
    assert host.socket(f"tcp://{address}:5432").is_listening
    assert host.socket("tcp://127.0.0.1:5432").is_listening


def test_passwords_are_stored_as_scram(host):
    assert _sql(host, "SHOW password_encryption") == "scram-sha-256"
    assert _sql(host, "SELECT count(*) FROM pg_authid WHERE rolpassword LIKE 'md5%'") == "0"
    assert (
        _sql(
            host,
            f"SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = '{USER}'",
        )
        == "t"
    )


def test_live_settings_match_the_variables(host):
    address = host.interface("eth0").addresses[0]
    assert _sql(host, "SHOW listen_addresses") == f"localhost,{address}"
    assert _sql(host, "SHOW max_connections") == MAX_CONNECTIONS
    assert _sql(host, "SHOW shared_buffers") == "256MB"


def test_database_is_owned_by_the_application_role(host):
    owner = _sql(
        host,
        f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DATABASE}'",
    )
    assert owner == USER


def test_application_role_has_no_admin_rights(host):
    flags = _sql(
        host,
        f"SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = '{USER}'",
    )
    assert flags == "f|f|f|t"


def test_public_cannot_connect_to_the_application_database(host):
    assert _sql(host, f"SELECT has_database_privilege('public', '{DATABASE}', 'CONNECT')") == "f"


def test_host_rules_never_trust(host):
    hba = host.file(f"/etc/postgresql/{VERSION}/main/pg_hba.conf")
    rules = [
        line.split()
        for line in hba.content_string.splitlines()
        if line and not line.startswith("#")
    ]
    assert rules, "pg_hba.conf has no rules"
    assert all("trust" not in rule for rule in rules)
    assert rules[-1][-1] == "reject"
    assert (
        _sql(
            host,
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL OR auth_method = 'trust'",
        )
        == "0"
    )


def test_application_role_connects_from_the_allowed_host(app_host):
    result = _connect(app_host, "SELECT current_user")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == USER


def test_application_role_creates_tables_in_its_own_schema(app_host):
    result = _connect(
        app_host,
        "DROP TABLE IF EXISTS probe; CREATE TABLE probe (id int); "
        "SELECT schemaname FROM pg_tables WHERE tablename = 'probe'; DROP TABLE probe",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == USER


def test_application_role_is_refused_from_another_host(other_host):
    result = _connect(other_host, "SELECT 1")
    assert result.rc != 0
    assert "rejects connection" in result.stderr


def test_wrong_password_is_refused(app_host):
    result = _connect(app_host, "SELECT 1", password="not-the-password")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_application_role_cannot_reach_another_database(app_host):
    result = app_host.run(
        f"PGPASSWORD={shlex.quote(PASSWORD)} psql -XAtq -h {DB_HOST} -U {USER} -d postgres -c 'SELECT 1'"
    )
    assert result.rc != 0
    assert "rejects connection" in result.stderr
