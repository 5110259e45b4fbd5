"""Jinja tests for the addresses an operator types: one check, by Python's own parser, wherever the
bundle needs an IP address (a listen address, a private address) or a network (a firewall source,
a pg_hba client)."""

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


class TestModule:
    def tests(self):
        return {"ip_address": ip_address, "ip_network": ip_network}
