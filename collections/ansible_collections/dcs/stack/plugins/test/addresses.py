"""Jinja tests for the addresses an operator types: one check, by Python's own parser, wherever the
bundle needs an IP address (a listen address, a private address) or a network (a firewall source,
a pg_hba client), and one for a DNS name a public CA issues for (a certificate's names)."""

import ipaddress
import re

# Python accepts an IPv6 scope ("fe80::1%eth0"), and a scope may hold any text: neither a filter
# nor a configuration file takes one, so only these characters pass.
ADDRESS_CHARACTERS = re.compile(r"[0-9A-Fa-f.:/]+")


def ip_address(value, version: int = 0) -> bool:
    """True for one IPv4 or IPv6 address (`version` 4 or 6 narrows it); a host name is not one."""
    if not ADDRESS_CHARACTERS.fullmatch(str(value)):
        return False
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return version in (0, address.version)


def ip_network(value, version: int = 0) -> bool:
    """True for an address or a CIDR network (host bits may be set: 10.0.0.5/24)."""
    if not ADDRESS_CHARACTERS.fullmatch(str(value)):
        return False
    try:
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return version in (0, network.version)


# Labels of letters, digits and inner hyphens, at least two of them: a CA issues for no bare host name.
DNS_NAME = re.compile(
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?[.])+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def dns_name(value) -> bool:
    """True for a DNS name with a dot (web.example.com); a bare host name is not one."""
    return DNS_NAME.fullmatch(str(value)) is not None


class TestModule:
    def tests(self):
        return {"ip_address": ip_address, "ip_network": ip_network, "dns_name": dns_name}
