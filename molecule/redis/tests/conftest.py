"""Shared helpers: the scenario's inventory variables and redis-cli calls with passwords kept off argv."""

import os
import shlex

import pytest
import testinfra.utils.ansible_runner

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
BROKER = INVENTORY.get_hosts("broker")[0]
# redis-server or valkey-server: the unit, CLI and config directory follow the flavour's name.
FLAVOUR = INVENTORY.get_variables(BROKER).get("redis_flavour", "redis")
UNIT = f"{FLAVOUR}-server"
CONFIG_DIR = f"/etc/{FLAVOUR}"


@pytest.fixture(scope="module")
def broker_vars() -> dict:
    """The broker's inventory variables (test passwords, overrides)."""
    return INVENTORY.get_variables(BROKER)


def cli(host, command: str, user: str | None = None, password: str | None = None):
    """Run redis-cli (or valkey-cli) on `host`; the password travels in REDISCLI_AUTH, not in argv."""
    env = f"REDISCLI_AUTH={shlex.quote(password)} " if password else ""
    user_opt = f"--user {shlex.quote(user)} " if user else ""
    return host.run(
        f"{env}{FLAVOUR}-cli -h 127.0.0.1 -p 6379 {user_opt}--no-auth-warning {command}"
    )
