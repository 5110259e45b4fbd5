"""Which of a role's apt packages a host may lack, by the package facts the run gathered.

An idempotent apt task is the dearest no-op a role runs: the apt module opens the whole package
cache on the host (about 0.7 core-seconds here), once per task, for packages that are installed.
The bundle's facts play gathers `ansible_facts.installed_packages` once per host (dcs.stack.
dpkg_packages; `ansible_facts.packages` from package_facts serves too); each role's install task runs
only when this filter leaves a name: with the facts, the names not installed; without them (a role
used alone), every name, so that apt decides as before. Facts gathered at the start of a
run never hide a missing package: a package installed later in the run is only absent from them, and
its next install task runs apt, which finds it there.
"""

from ansible.errors import AnsibleFilterError

DOCUMENTATION = ""


def missing_packages(names, facts):
    """The names in `names` (a name or a list) that `facts` (ansible_facts) does not list as
    installed; all of them when the run gathered no package facts. A name with a version or release
    (`pkg=1.2`, `pkg/bookworm`) is never taken as installed: apt decides."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
        raise AnsibleFilterError(
            f"missing_packages: expected a package name or a list of them, got {names!r}"
        )
    facts = facts or {}
    installed = facts.get("installed_packages", facts.get("packages"))
    if not isinstance(installed, list | dict):
        return list(names)
    return [name for name in names if name not in installed]


class FilterModule:
    def filters(self):
        return {"missing_packages": missing_packages}
