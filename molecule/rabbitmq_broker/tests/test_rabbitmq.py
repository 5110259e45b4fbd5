"""The broker accepts only the application user, on its vhost, and its queues are quorum queues."""

import json
import shlex
import time
import uuid

import pytest

# A fresh queue per run, so a repeated verify starts from an empty queue.
QUEUE = f"durability-{uuid.uuid4().hex[:8]}"
MESSAGES = 5

# A tiny pika client: connect as USER/PASSWORD to VHOST and run ACTION; prints what happened.
CLIENT = """
import sys
import pika
user, password, vhost, action, queue = sys.argv[1:6]
params = pika.ConnectionParameters(
    "127.0.0.1", 5672, vhost, pika.PlainCredentials(user, password), connection_attempts=1
)
try:
    connection = pika.BlockingConnection(params)
except pika.exceptions.ProbableAuthenticationError:
    print("auth-refused"); sys.exit(3)
except pika.exceptions.ProbableAccessDeniedError:
    print("vhost-refused"); sys.exit(4)
channel = connection.channel()
if action == "declare":
    channel.queue_declare(queue, durable=True)
elif action == "publish":
    channel.confirm_delivery()
    channel.queue_declare(queue, durable=True)
    for n in range(int(sys.argv[6])):
        channel.basic_publish("", queue, f"message {n}".encode(),
                              pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
elif action == "get":
    method, _properties, body = channel.basic_get(queue, auto_ack=True)
    print(body.decode() if method else "empty")
connection.close()
print("ok")
"""


@pytest.fixture(scope="module")
def app(host):
    """User, password and vhost the role was given for the application."""
    inventory = host.ansible.get_variables()
    return (
        inventory["rabbitmq_app_user"],
        inventory["rabbitmq_app_password"],
        inventory["rabbitmq_vhost"],
    )


def amqp(host, user, password, vhost, action="connect", queue=QUEUE, *extra):
    args = [CLIENT, user, password, vhost, action, queue, *map(str, extra)]
    return host.run("python3 -c " + " ".join(shlex.quote(a) for a in args))


def rabbitmqctl(host, *args):
    return host.run("rabbitmqctl --quiet " + " ".join(shlex.quote(a) for a in args))


def erlang(host, expression):
    """Evaluate an Erlang expression inside the running node."""
    return rabbitmqctl(host, "eval", expression).stdout.strip()


def queue_info(host, vhost, name):
    columns = ["name", "type", "policy", "messages"]
    listed = rabbitmqctl(host, "list_queues", "-p", vhost, *columns, "--formatter", "json")
    assert listed.rc == 0, listed.stderr
    return next((q for q in json.loads(listed.stdout) if q["name"] == name), None)


def users(host):
    listed = json.loads(rabbitmqctl(host, "list_users", "--formatter", "json").stdout)
    return {user["user"]: user["tags"] for user in listed}


def journal(host):
    return host.run("journalctl -u rabbitmq-server -n 50 --no-pager").stdout


def test_rabbitmq_server_runs_and_starts_at_boot(host):
    service = host.service("rabbitmq-server")
    assert service.is_running, journal(host)
    assert service.is_enabled


def test_amqp_listens_on_port_5672(host):
    assert host.socket("tcp://0.0.0.0:5672").is_listening


def test_management_plugin_is_off_by_default(host):
    assert not host.socket("tcp://0.0.0.0:15672").is_listening
    enabled = host.run("rabbitmq-plugins list --enabled --minimal")
    assert enabled.rc == 0, enabled.stderr
    assert "rabbitmq_management" not in enabled.stdout.split()


def test_prometheus_plugin_serves_the_node_metrics_on_the_configured_address_only(host):
    enabled = host.run("rabbitmq-plugins -q list --enabled --minimal")
    assert enabled.rc == 0, enabled.stderr
    assert enabled.stdout.split() == ["rabbitmq_prometheus"], enabled.stdout
    assert host.socket("tcp://127.0.0.1:15692").is_listening
    assert not host.socket("tcp://0.0.0.0:15692").is_listening
    metrics = host.run(
        "python3 -c 'import urllib.request, sys; "
        'sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:15692/metrics").read().decode())\''
    )
    assert metrics.rc == 0, metrics.stderr
    hostname = host.check_output("hostname -s")
    assert f'rabbitmq_node="rabbit@{hostname}"' in metrics.stdout
    alarms = [line for line in metrics.stdout.splitlines() if line.startswith("rabbitmq_alarms_")]
    assert {line.split()[0] for line in alarms} >= {
        "rabbitmq_alarms_free_disk_space_watermark",
        "rabbitmq_alarms_memory_used_watermark",
        "rabbitmq_alarms_file_descriptor_limit",
    }
    assert [line for line in alarms if line.split()[1] != "0"] == []


def test_node_has_the_stable_short_hostname_name(host):
    hostname = host.check_output("hostname -s")
    assert erlang(host, "node().") == f"'rabbit@{hostname}'"


def test_guest_user_no_longer_exists(host):
    assert "guest" not in users(host)


def test_guest_cannot_log_in_even_from_localhost(host):
    result = amqp(host, "guest", "guest", "/")
    assert result.rc == 3 and "auth-refused" in result.stdout, result.stderr


def test_anonymous_login_is_disabled(host):
    setting = erlang(host, "application:get_env(rabbit, anonymous_login_user).")
    assert setting == "{ok,none}"


def test_app_user_connects_to_its_vhost(host, app):
    result = amqp(host, *app)
    assert result.rc == 0 and "ok" in result.stdout, result.stderr


def test_app_user_is_refused_on_the_default_vhost(host, app):
    user, password, _vhost = app
    result = amqp(host, user, password, "/")
    assert result.rc == 4 and "vhost-refused" in result.stdout, result.stderr


def test_app_user_with_a_wrong_password_is_refused(host, app):
    user, _password, vhost = app
    result = amqp(host, user, "not-the-password", vhost)
    assert result.rc == 3, result.stdout + result.stderr


def test_app_user_has_no_tags(host, app):
    user, _password, _vhost = app
    assert users(host)[user] == []


def test_queue_declared_without_a_type_becomes_a_quorum_queue(host, app):
    vhost = app[2]
    declared = amqp(host, *app, "declare", "untyped")
    assert declared.rc == 0, declared.stderr
    assert queue_info(host, vhost, "untyped")["type"] == "quorum"


def test_delivery_limit_policy_governs_the_vhost_quorum_queues(host, app):
    vhost = app[2]
    listed = rabbitmqctl(host, "list_policies", "-p", vhost, "--formatter", "json")
    policies = {
        p["name"]: (p["apply-to"], json.loads(p["definition"])) for p in json.loads(listed.stdout)
    }
    assert policies["quorum-delivery-limit"] == (
        "quorum_queues",
        {"delivery-limit": 20},
    )
    declared = amqp(host, *app, "declare", "limited")
    assert declared.rc == 0, declared.stderr
    assert queue_info(host, vhost, "limited")["policy"] == "quorum-delivery-limit"


def test_consumer_timeout_is_live_in_the_node(host):
    setting = erlang(host, "application:get_env(rabbit, consumer_timeout).")
    assert setting == "{ok,1800000}"


def test_erlang_cookie_is_readable_by_rabbitmq_only(host):
    cookie = host.file("/var/lib/rabbitmq/.erlang.cookie")
    assert cookie.user == "rabbitmq"
    assert cookie.mode == 0o400


def wait_for_messages(host, vhost, name, count, timeout=90):
    """A quorum queue reports its length only once its Raft member has recovered; poll for it."""
    deadline = time.monotonic() + timeout
    while True:
        queue = queue_info(host, vhost, name)
        if (queue is not None and queue["messages"] == count) or time.monotonic() > deadline:
            return queue
        time.sleep(2)


def test_quorum_queue_and_its_messages_survive_a_restart(host, app):
    vhost = app[2]
    published = amqp(host, *app, "publish", QUEUE, MESSAGES)
    assert published.rc == 0, published.stderr
    assert wait_for_messages(host, vhost, QUEUE, MESSAGES)["messages"] == MESSAGES
    assert host.run("systemctl restart rabbitmq-server").rc == 0, journal(host)
    assert rabbitmqctl(host, "await_startup", "--timeout", "120").rc == 0, journal(host)
    queue = wait_for_messages(host, vhost, QUEUE, MESSAGES)
    assert queue is not None, journal(host)
    assert queue["type"] == "quorum"
    assert queue["messages"] == MESSAGES, journal(host)
    first = amqp(host, *app, "get", QUEUE)
    assert first.stdout.splitlines()[0] == "message 0", first.stderr


def test_the_definitions_export_writes_the_vhost_user_and_policy_for_root_only(host):
    timer = host.service("rabbitmq-definitions-backup.timer")
    assert timer.is_enabled and timer.is_running
    before = set(host.check_output("ls -1 /var/backups/rabbitmq").split())
    host.check_output("systemctl start rabbitmq-definitions-backup.service")
    files = set(host.check_output("ls -1 /var/backups/rabbitmq").split()) - before
    assert len(files) == 1 and not any(name.endswith(".part") for name in files), files
    export = host.file(f"/var/backups/rabbitmq/{files.pop()}")
    assert (export.user, export.mode) == ("root", 0o600)
    definitions = json.loads(export.content_string)
    assert "app" in {vhost["name"] for vhost in definitions["vhosts"]}
    assert "app" in {user["name"] for user in definitions["users"]}
    assert "guest" not in {user["name"] for user in definitions["users"]}
    assert "quorum-delivery-limit" in {policy["name"] for policy in definitions["policies"]}


def test_an_export_older_than_the_kept_days_is_removed_by_the_next_export(host):
    old = "/var/backups/rabbitmq/definitions-20000101T000000Z.json"
    host.check_output(f"install -m 0600 /dev/null {old} && touch -d '2000-01-01' {old}")
    host.check_output("systemctl start rabbitmq-definitions-backup.service")
    assert not host.file(old).exists
