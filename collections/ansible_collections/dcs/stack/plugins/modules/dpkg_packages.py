#!/usr/bin/python
"""The names of the packages dpkg lists as installed, as ansible_facts.installed_packages."""

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: dpkg_packages
short_description: The packages dpkg lists as installed, read from its status file
description:
  - Reads dpkg's status file and sets C(ansible_facts.installed_packages), the sorted names of the
    packages whose status is C(installed) (what C(dcs.stack.missing_packages) compares with).
  - M(ansible.builtin.package_facts) with C(manager=apt) opens the whole apt cache through python3-apt
    for the same names; reading the status file takes a small fraction of that.
  - Names only, no versions: Ansible copies a host's facts each time it builds the host's variables
    (every task, every C(hostvars) lookup), and a list of names is a fraction of package_facts' dicts.
  - A package that is unpacked or half-configured is not listed, so that an install task runs apt,
    which finishes it.
options:
  status_file:
    description: dpkg's status file.
    type: path
    default: /var/lib/dpkg/status
author: django-celery-stack
"""

EXAMPLES = r"""
- name: Gather the packages this host has installed
  dcs.stack.dpkg_packages:
"""

RETURN = r"""
ansible_facts:
  description: C(installed_packages), the sorted names of the installed packages.
  returned: success
  type: dict
"""


def installed_packages(text):
    """The sorted names of the packages whose stanza's Status ends in `installed` (dpkg's "want flag
    error status": `install ok installed`, `hold ok installed`); a name installed for two
    architectures once."""
    names = set()
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            # Continuation lines (a description, conffiles) start with a space.
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            if key in ("Package", "Status"):
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Status", "").split()[-1:] == ["installed"]:
            names.add(fields["Package"])
    return sorted(names)


def main():
    module = AnsibleModule(
        argument_spec={"status_file": {"type": "path", "default": "/var/lib/dpkg/status"}},
        supports_check_mode=True,
    )
    path = module.params["status_file"]
    try:
        with open(path, encoding="utf-8", errors="replace") as status:
            text = status.read()
    except OSError as error:
        module.fail_json(msg=f"cannot read dpkg's status file {path}: {error}")
    module.exit_json(changed=False, ansible_facts={"installed_packages": installed_packages(text)})


if __name__ == "__main__":
    main()
