"""The stack's alert rules, rendered with the repository's defaults as the monitoring hosts get
them, pass `promtool check rules`, and each alert fires when its unit test says and not before
(`promtool test rules` on tests/alert_rules/stack.test.yml, with the default thresholds)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "alert_rules"


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("alert_rules")
    inventory = directory / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    monitoring:\n      hosts:\n        promtest:\n"
        f"          ansible_python_interpreter: {sys.executable}\n"
    )
    rules_file = directory / "rules.yml"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "groups.yml",
            "-i",
            str(inventory),
            "-e",
            f"rules_file={rules_file}",
            str(HERE / "render.yml"),
        ],
        cwd=ROOT,
        # Nothing to speed up on the control node alone: the plain strategy, not Mitogen's.
        env={
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_STRATEGY": "linear",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.copy(HERE / "stack.test.yml", directory / "stack.test.yml")
    return rules_file


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_promtool_accepts_every_rule(rules):
    result = promtool("check", "rules", str(rules), cwd=rules.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_when_its_unit_test_says(rules):
    result = promtool("test", "rules", "stack.test.yml", cwd=rules.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook(rules):
    groups = yaml.safe_load(rules.read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "stack.test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert set(alerts) == tested
    assert [name for name, rule in alerts.items() if not rule["annotations"].get("runbook")] == []
