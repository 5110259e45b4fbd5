"""The one sandbox every app service runs in: systemd's hardening directives, as unit lines.

Gunicorn, each Celery worker, Beat and Flower render the same set (roles/*/templates), so that
`systemd-analyze security` scores each of them the same (about 1.1, "OK"); a role adds only what
its service needs beyond it (ReadWritePaths=, ...). Measured with the reference app and a
startproject project: prefork pools, time-limit kills, Gunicorn's sync workers and Flower run under it.
"""

from ansible.errors import AnsibleFilterError

DOCUMENTATION = ""

# A non-root service that talks TCP and Unix sockets, writes only where ReadWritePaths= says, and
# needs no privilege, device, namespace, kernel interface or other user's process.
SYSTEMD_HARDENING: tuple[str, ...] = (
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "NoNewPrivileges=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "PrivateIPC=yes",
    "PrivateUsers=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    "SystemCallErrorNumber=EPERM",
    "RemoveIPC=yes",
    "UMask=0027",
    "DevicePolicy=closed",
    "KeyringMode=private",
)


def systemd_hardening(overrides=None) -> list[str]:
    """The shared set, with `overrides` (unit lines such as "MemoryDenyWriteExecute=no") replacing
    the lines of the same directive and any other directive appended."""
    overrides = list(overrides or [])
    for line in overrides:
        if not isinstance(line, str) or "=" not in line or "\n" in line:
            raise AnsibleFilterError(
                f"a hardening override must be one 'Directive=value' line: {line!r}"
            )
    replaced = {line.partition("=")[0] for line in overrides}
    return [
        line for line in SYSTEMD_HARDENING if line.partition("=")[0] not in replaced
    ] + overrides


class FilterModule:
    def filters(self):
        return {"systemd_hardening": systemd_hardening}
