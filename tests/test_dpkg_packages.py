"""dcs.stack.dpkg_packages: the names dpkg's status file says are installed."""

from control_node import load_plugin

installed_packages = load_plugin("modules/dpkg_packages.py").installed_packages

STATUS = """\
Package: nginx
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 1.26.3-3
Description: small, powerful, scalable web/proxy server
 Status: not a field, a line of the description
Conffiles:
 /etc/nginx/nginx.conf 0123456789abcdef

Package: redis-server
Status: install ok half-configured
Architecture: amd64
Version: 5:8.0.2-3

Package: postgresql-17
Status: deinstall ok config-files
Architecture: amd64
Version: 17.6-0

Package: libc6
Status: hold ok installed
Architecture: amd64
Version: 2.41-12
Multi-Arch: same

Package: libc6
Status: install ok installed
Architecture: i386
Version: 2.41-12
"""


def test_installed_packages_are_listed_by_name_once():
    assert installed_packages(STATUS) == ["libc6", "nginx"]


def test_a_half_configured_or_removed_package_is_not_installed():
    packages = installed_packages(STATUS)
    assert "redis-server" not in packages
    assert "postgresql-17" not in packages


def test_an_empty_status_file_lists_nothing():
    assert installed_packages("") == []
