"""dcs.stack.missing_packages: which of a role's packages its apt task must still install."""

import pytest
from ansible.errors import AnsibleFilterError
from control_node import load_plugin

missing = load_plugin("filter/packages.py").missing_packages

FACTS = {"packages": {"nginx": [{"version": "1.26"}], "openssl": [{"version": "3.5"}]}}


def test_installed_packages_need_no_apt_run():
    assert missing(["nginx", "openssl"], FACTS) == []


def test_the_names_dpkg_packages_gathers_serve_as_well():
    names = {"installed_packages": ["nginx", "openssl"]}
    assert missing(["nginx", "logrotate"], names) == ["logrotate"]


def test_a_package_the_facts_do_not_list_is_missing():
    assert missing(["nginx", "logrotate"], FACTS) == ["logrotate"]
    assert missing("logrotate", FACTS) == ["logrotate"]


def test_without_package_facts_every_package_goes_to_apt():
    assert missing(["nginx", "openssl"], {}) == ["nginx", "openssl"]
    assert missing("nginx", {"distribution": "Debian"}) == ["nginx"]


def test_a_pinned_version_or_release_is_left_to_apt():
    assert missing(["nginx=1.26", "openssl/trixie"], FACTS) == ["nginx=1.26", "openssl/trixie"]


def test_anything_but_names_is_refused():
    with pytest.raises(AnsibleFilterError, match="package name"):
        missing({"name": "nginx"}, FACTS)
