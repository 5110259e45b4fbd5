"""Which of the rabbitmq role's access settings a node already holds, from one read of its
definitions (`rabbitmqctl export_definitions -`).

Each community.rabbitmq module reads the node's state with rabbitmqctl calls of its own, and each call
starts an Erlang VM: about 0.5 s, and the application user's task (users, password, permissions,
topic permissions) 3 s. One export holds all of it; the role runs a module only where this filter
finds the node's state differing from the inventory's, and the module then decides as before. Where
the export leaves a doubt (a hashing algorithm this filter does not know, a field it lacks), the
answer is "not current": a doubt runs the module, it never skips one.
"""

import base64
import hashlib
import hmac
import json

from ansible.errors import AnsibleFilterError

DOCUMENTATION = ""

# RabbitMQ's password hashes: base64(salt of 4 bytes + digest(salt + UTF-8 password)).
HASHES = {
    "rabbit_password_hashing_sha256": hashlib.sha256,
    "rabbit_password_hashing_sha512": hashlib.sha512,
}


def password_matches(user, password):
    digest = HASHES.get(user.get("hashing_algorithm"))
    try:
        stored = base64.b64decode(user.get("password_hash") or "", validate=True)
    except ValueError:
        return False
    if digest is None or len(stored) <= 4:
        return False
    salt = stored[:4]
    return hmac.compare_digest(stored, salt + digest(salt + password.encode()).digest())


def rabbitmq_access_current(definitions, user, password, vhost, policy):
    """What of the role's access settings `definitions` (the export, as JSON text or parsed) already
    holds: {'guest_absent', 'vhost_present', 'vhost_default_queue_type', 'user_current',
    'policy_current'}. The user is current when it exists with no tags, `password`, full rights on
    `vhost` and none elsewhere, and no topic permissions. `policy` is {'name', 'pattern', 'apply_to',
    'definition', 'priority'} on `vhost`."""
    if isinstance(definitions, str):
        try:
            definitions = json.loads(definitions)
        except ValueError as error:
            raise AnsibleFilterError(
                f"rabbitmq_access_current: the export is not JSON: {error}"
            ) from None
    if not isinstance(definitions, dict):
        raise AnsibleFilterError("rabbitmq_access_current: expected the export's JSON object")
    users = {entry.get("name"): entry for entry in definitions.get("users") or []}
    vhosts = {entry.get("name"): entry for entry in definitions.get("vhosts") or []}
    permissions = [e for e in definitions.get("permissions") or [] if e.get("user") == user]
    topic_permissions = [
        e for e in definitions.get("topic_permissions") or [] if e.get("user") == user
    ]
    entry = users.get(user)
    user_current = (
        entry is not None
        and not entry.get("tags")
        and password_matches(entry, password)
        and [
            (p.get("vhost"), p.get("configure"), p.get("write"), p.get("read")) for p in permissions
        ]
        == [(vhost, ".*", ".*", ".*")]
        and not topic_permissions
    )
    wanted = {
        "name": policy["name"],
        "vhost": vhost,
        "pattern": policy["pattern"],
        "apply-to": policy["apply_to"],
        "definition": policy["definition"],
        "priority": int(policy.get("priority", 0)),
    }
    held = [
        {key: found.get(key) for key in wanted}
        for found in definitions.get("policies") or []
        if found.get("name") == policy["name"] and found.get("vhost") == vhost
    ]
    vhost_entry = vhosts.get(vhost) or {}
    return {
        "guest_absent": "guest" not in users,
        "vhost_present": vhost in vhosts,
        "vhost_default_queue_type": vhost_entry.get("default_queue_type")
        or (vhost_entry.get("metadata") or {}).get("default_queue_type")
        or "",
        "user_current": bool(user_current),
        "policy_current": held == [wanted],
    }


class FilterModule:
    def filters(self):
        return {"rabbitmq_access_current": rabbitmq_access_current}
