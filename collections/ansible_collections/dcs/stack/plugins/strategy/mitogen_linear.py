"""Mitogen's linear strategy (the `mitogen` package from requirements/tools.lock), loaded from the
project's collection so that ansible.cfg needs no site-packages path: `strategy = dcs.stack.mitogen_linear`.

Mitogen runs each host's modules over one persistent interpreter instead of a new connection and
Python per task. It takes over only the connections it knows by their short names (`docker`, `ssh`,
`local`, ...), so the inventories say `ansible_connection: docker`, not community.docker.docker.
`ANSIBLE_STRATEGY=linear` switches it off. Mitogen's CPU pinning is off (plugin_utils/mitogen_cpus.py:
it gave all of Ansible one core on a 2-core controller); DCS_MITOGEN_PIN_CPUS=1 turns it back on.
"""

import ansible_mitogen.loaders
import ansible_mitogen.strategy
from ansible_collections.dcs.stack.plugins.plugin_utils.mitogen_cpus import apply_cpu_policy

DOCUMENTATION = """
name: mitogen_linear
short_description: Ansible's linear strategy with Mitogen's connection multiplexing
description:
  - Runs tasks in lockstep across hosts like C(linear), over Mitogen's persistent connections.
"""

apply_cpu_policy()

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    pass
