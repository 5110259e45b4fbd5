"""The one way the project writes an operator's value into an env file or a URL.

Every secret, name and address an operator types passes through these filters wherever it lands,
so that any value a vault can hold arrives unchanged: an environment file read both by systemd
(EnvironmentFile=) and by POSIX sh (`set -a; . file`), or one component of a URL.
"""

from urllib.parse import quote

from ansible.errors import AnsibleFilterError

DOCUMENTATION = ""

# Inside double quotes, systemd's EnvironmentFile= parser and POSIX sh both treat exactly these
# four characters specially, and both read a backslash before one of them as the character itself.
_ENV_SPECIAL = ("\\", '"', "$", "`")


def env_problem(value) -> str:
    """Why `value` cannot be written into an environment file, or "" when it can."""
    text = str(value)
    if "\n" in text or "\r" in text:
        return "contains a line break, which an environment file cannot carry"
    if "\x00" in text:
        return "contains a NUL byte, which no environment variable can carry"
    return ""


def env_value(value, name: str = "") -> str:
    """`value` as a double-quoted word that systemd and sh both read back unchanged."""
    problem = env_problem(value)
    if problem:
        raise AnsibleFilterError(f"{name or 'a value'} {problem}; remove it from the value.")
    text = str(value)
    for char in _ENV_SPECIAL:
        text = text.replace(char, "\\" + char)
    return f'"{text}"'


def host_port(address, port) -> str:
    """`address:port` for a listen or scrape address; an IPv6 address goes in brackets."""
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def url_part(value) -> str:
    """`value` percent-encoded for any one component of a URL (user, password, host path, vhost)."""
    return quote(str(value), safe="")


class FilterModule:
    def filters(self):
        return {
            "env_value": env_value,
            "env_problem": env_problem,
            "host_port": host_port,
            "url_part": url_part,
        }
