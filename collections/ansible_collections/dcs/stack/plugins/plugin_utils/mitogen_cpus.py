"""Mitogen's CPU pinning, off unless DCS_MITOGEN_PIN_CPUS=1 (shared by this collection's strategies).

Mitogen pins its processes to CPUs (ansible_mitogen/affinity.py, "FixedPolicy"). On a machine with 2
or 3 CPUs it reserves CPU 0 for its connection multiplexer and pins Ansible's own process and every
worker process it forks to the CPUs left: on 2 CPUs, one core for all of Ansible's controller work
while the multiplexer's core waits. Measured on a 2-core control node (the local 5-container stack):
the idempotent site.yml re-run took 46.8-46.9 s pinned and 38.5-39.5 s unpinned (changed=0, runs
alternated); 250 skipped host-tasks 6.0 s against 3.4 s.
"""

import os

import ansible_mitogen.affinity


def apply_cpu_policy():
    """Replace Mitogen's pinning with its no-op policy unless DCS_MITOGEN_PIN_CPUS=1 asks for it.

    Called when a strategy module is loaded, before Mitogen starts its multiplexer and assigns the
    controller a CPU (both read the module-level `policy` at call time)."""
    if os.environ.get("DCS_MITOGEN_PIN_CPUS", "0") != "1":
        ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
