"""Ansible's `free` strategy, over Mitogen when the run uses Mitogen: each host runs its own tasks
as fast as it can, without waiting for the other hosts at every task.

The tier plays use it where hosts do different, independent work (the data tier's services, each
app host switching its own services): the slowest host sets the pace, not the sum of the tiers.
Plays that must stay in step (preflight, the release built once and verified once) keep `linear`.

Mitogen is on when the run's default strategy is one of Mitogen's (ansible.cfg says
`dcs.stack.mitogen_linear`); `ANSIBLE_STRATEGY=linear` switches it off here too.
"""

from ansible import constants as C
from ansible.plugins.loader import strategy_loader

DOCUMENTATION = """
name: parallel
short_description: The free strategy, over Mitogen when the run's default strategy is Mitogen's
description:
  - Like C(free), every host runs its tasks independently; with Mitogen when the configured default
    strategy is a Mitogen one (C(ANSIBLE_STRATEGY=linear) turns Mitogen off for this one too).
"""

_Free = strategy_loader.get("free", class_only=True)

if "mitogen" in str(C.DEFAULT_STRATEGY):
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
    from ansible_collections.dcs.stack.plugins.plugin_utils.mitogen_cpus import apply_cpu_policy

    apply_cpu_policy()

    _Free = ansible_mitogen.loaders.strategy_loader.get("free", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Free):
        pass

else:

    class StrategyModule(_Free):
        pass
