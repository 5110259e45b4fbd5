"""dcs.stack.rabbitmq_access_current: which of the rabbitmq role's access settings a node holds."""

import base64
import hashlib
import json

import pytest
from ansible.errors import AnsibleFilterError
from control_node import load_plugin

current = load_plugin("filter/rabbitmq_access.py").rabbitmq_access_current

PASSWORD = "p$w'd `x` \\ ü"
POLICY = {
    "name": "quorum-delivery-limit",
    "pattern": ".*",
    "apply_to": "quorum_queues",
    "definition": {"delivery-limit": 20},
    "priority": 0,
}


def hashed(password, digest=hashlib.sha256, salt=b"\x01\x02\x03\x04"):
    return base64.b64encode(salt + digest(salt + password.encode()).digest()).decode()


def export(**changes):
    """A node's definitions as `rabbitmqctl export_definitions -` prints them, with the role's
    settings in place."""
    definitions = {
        "rabbitmq_version": "4.0.5",
        "users": [
            {
                "name": "app",
                "password_hash": hashed(PASSWORD),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
                "limits": {},
            }
        ],
        "vhosts": [
            {"name": "/", "default_queue_type": "classic", "metadata": {}},
            {"name": "app", "default_queue_type": "quorum", "metadata": {"tags": []}},
        ],
        "permissions": [
            {"user": "app", "vhost": "app", "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "topic_permissions": [],
        "policies": [
            {
                "vhost": "app",
                "name": "quorum-delivery-limit",
                "pattern": ".*",
                "apply-to": "quorum_queues",
                "definition": {"delivery-limit": 20},
                "priority": 0,
            }
        ],
        "queues": [],
    }
    definitions.update(changes)
    return json.dumps(definitions)


def state(definitions, password=PASSWORD):
    return current(definitions, "app", password, "app", POLICY)


def test_a_node_that_holds_every_setting_needs_no_module_run():
    assert state(export()) == {
        "guest_absent": True,
        "vhost_present": True,
        "vhost_default_queue_type": "quorum",
        "user_current": True,
        "policy_current": True,
    }


def test_another_password_makes_the_user_task_run():
    assert state(export(), password=PASSWORD + "2")["user_current"] is False


def test_a_sha512_hash_is_checked_too_and_an_unknown_algorithm_counts_as_a_difference():
    user = json.loads(export())["users"][0]
    sha512 = {
        **user,
        "password_hash": hashed(PASSWORD, hashlib.sha512),
        "hashing_algorithm": "rabbit_password_hashing_sha512",
    }
    assert state(export(users=[sha512]))["user_current"] is True
    md5 = {**user, "hashing_algorithm": "rabbit_password_hashing_md5"}
    assert state(export(users=[md5]))["user_current"] is False
    broken = {**user, "password_hash": "not base64!"}
    assert state(export(users=[broken]))["user_current"] is False


def test_tags_rights_elsewhere_or_topic_permissions_make_the_user_task_run():
    user = json.loads(export())["users"][0]
    assert state(export(users=[{**user, "tags": ["administrator"]}]))["user_current"] is False
    rights = json.loads(export())["permissions"]
    elsewhere = {**rights[0], "vhost": "/"}
    assert state(export(permissions=[*rights, elsewhere]))["user_current"] is False
    narrower = {**rights[0], "write": "^app\\."}
    assert state(export(permissions=[narrower]))["user_current"] is False
    topic = [{"user": "app", "vhost": "app", "exchange": "amq.topic", "write": ".*", "read": ".*"}]
    assert state(export(topic_permissions=topic))["user_current"] is False


def test_a_missing_user_vhost_or_policy_and_a_present_guest_are_differences():
    guest = {"name": "guest", "password_hash": "", "hashing_algorithm": "", "tags": []}
    found = state(export(users=[guest], vhosts=[], permissions=[], policies=[]))
    assert found == {
        "guest_absent": False,
        "vhost_present": False,
        "vhost_default_queue_type": "",
        "user_current": False,
        "policy_current": False,
    }


def test_a_policy_that_differs_in_any_field_makes_the_policy_task_run():
    held = json.loads(export())["policies"][0]
    for change in (
        {"definition": {"delivery-limit": 5}},
        {"definition": {"delivery-limit": 20, "max-length": 10}},
        {"pattern": "^app"},
        {"apply-to": "queues"},
        {"priority": 1},
    ):
        assert state(export(policies=[{**held, **change}]))["policy_current"] is False, change
    assert state(export(policies=[held, {**held, "vhost": "/"}]))["policy_current"] is True


def test_the_default_queue_type_is_read_from_the_vhost_or_its_metadata():
    vhost = {"name": "app", "metadata": {"default_queue_type": "quorum"}}
    assert state(export(vhosts=[vhost]))["vhost_default_queue_type"] == "quorum"


def test_an_export_that_is_not_json_is_refused():
    with pytest.raises(AnsibleFilterError, match="not JSON"):
        state("Error: unable to perform an operation on node")
    with pytest.raises(AnsibleFilterError, match="JSON object"):
        state("[]")
