"""Run a playbook on the control node alone, against the repository's defaults (groups.yml and the
group_vars beside it) and a test inventory: how the static tests render what the roles would write."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_playbook(playbook: Path, inventory: Path, extra_vars: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "groups.yml",
            "-i",
            str(inventory),
            "-e",
            json.dumps(extra_vars),
            str(playbook),
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


def load_plugin(relative: str):
    """Import one of the dcs.stack collection's plugin files (e.g. "filter/packages.py") as a plain
    module, for tests that call its functions directly."""
    path = ROOT / "collections/ansible_collections/dcs/stack/plugins" / relative
    spec = importlib.util.spec_from_file_location(f"dcs_stack_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
