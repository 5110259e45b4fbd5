"""The one check of an address an operator types (collection dcs.stack, tests ip_address and
ip_network): the roles' listen addresses, preflight's private addresses, firewall sources and
PostgreSQL's client networks all go through it; and dns_name, for a certificate's names."""

import pytest
from control_node import load_plugin

addresses = load_plugin("test/addresses.py")

NOT_ADDRESSES = [
    "db.internal",
    "localhost",
    "999.1.1.1",
    "10.0.0",
    "10.0.0.1 ",
    "10.0.0.1; flush ruleset",
    "fe80::1%eth0 accept",
    "",
    "beef",
]


@pytest.mark.parametrize("value", ["10.0.0.5", "0.0.0.0", "::", "::1", "fd00::5", "127.0.0.1"])
def test_an_ip_address_passes(value):
    assert addresses.ip_address(value)
    assert addresses.ip_network(value)


@pytest.mark.parametrize("value", NOT_ADDRESSES + ["10.0.0.0/24"])
def test_a_host_name_a_malformed_address_or_a_network_is_not_an_address(value):
    assert not addresses.ip_address(value)


@pytest.mark.parametrize("value", ["10.0.0.0/24", "10.0.0.5/24", "fd00::/64", "192.168.1.7"])
def test_a_cidr_network_or_an_address_is_a_network(value):
    assert addresses.ip_network(value)


@pytest.mark.parametrize("value", NOT_ADDRESSES + ["10.0.0.0/33", "fd00::/129"])
def test_a_host_name_or_a_malformed_network_is_not_a_network(value):
    assert not addresses.ip_network(value)


def test_a_version_narrows_the_check():
    assert addresses.ip_address("10.0.0.5", 4)
    assert not addresses.ip_address("fd00::5", 4)
    assert addresses.ip_network("fd00::/64", 6)
    assert not addresses.ip_network("10.0.0.0/8", 6)


@pytest.mark.parametrize("value", ["web.dcs.test", "shop.example.com", "a-b.c0"])
def test_a_name_with_a_dot_is_a_dns_name(value):
    assert addresses.dns_name(value)


@pytest.mark.parametrize(
    "value",
    ["localhost", "dcs-web-1", "-a.example.com", "a-.example.com", "a..b", "a.b ", "a b.c", ""],
)
def test_a_bare_host_name_or_a_malformed_name_is_not_a_dns_name(value):
    assert not addresses.dns_name(value)
