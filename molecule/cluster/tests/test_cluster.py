"""The broker tier as a RabbitMQ cluster: every node sees every other running, every Celery queue is
a quorum queue with a replica on each node and a leader, and the app's clients know every node."""

import json
import re
import time

import pytest
from conftest import APP, BROKERS, DATABASE, QUEUES, WORKERS, connect, host, with_app
from dcs_testlib import run_playbook

VHOST = APP


def nodes_running(name: str) -> set[str]:
    status = json.loads(host(name).check_output("rabbitmqctl cluster_status --formatter json"))
    return set(status["running_nodes"])


def quorum_status() -> dict[str, dict]:
    out = host(BROKERS[0]).check_output(
        f"rabbitmqctl list_queues -p {VHOST} name type leader members online --formatter json -q"
    )
    return {queue["name"]: queue for queue in json.loads(out)}


@pytest.mark.parametrize("name", BROKERS)
def test_each_broker_node_sees_all_three_nodes_running(name):
    assert nodes_running(name) == {f"rabbit@{broker}" for broker in BROKERS}


@pytest.mark.parametrize("queue", list(QUEUES))
def test_every_celery_queue_is_a_quorum_queue_with_a_replica_on_each_node_and_a_leader(queue):
    status = quorum_status()[queue]
    every_node = {f"rabbit@{broker}" for broker in BROKERS}
    assert status["type"] == "quorum"
    assert set(status["members"]) == every_node
    assert set(status["online"]) == every_node
    assert status["leader"] in every_node


def test_cluster_settings_were_made_once_and_are_seen_on_every_node():
    """The vhost, its user and the delivery-limit policy belong to the cluster: made through the
    seed, they are there on every node."""
    for name in BROKERS:
        broker = host(name)
        assert VHOST in broker.check_output("rabbitmqctl list_vhosts -q name").split()
        assert APP in broker.check_output("rabbitmqctl list_users -q").split()
        assert "delivery-limit" in broker.check_output(f"rabbitmqctl list_policies -q -p {VHOST}")


@pytest.mark.parametrize("name", WORKERS)
def test_every_app_host_publishes_with_confirms_to_a_failover_list_of_every_node(name):
    found = with_app(
        host(name),
        "from urllib.parse import urlsplit\n"
        "print(json.dumps({'hosts': [urlsplit(url).hostname for url in app.conf.broker_url.split(';')],"
        " 'confirm': app.conf.broker_transport_options.get('confirm_publish')}))",
    )
    addresses = [host(broker).check_output("hostname -I").split()[0] for broker in BROKERS]
    assert found == {"hosts": addresses, "confirm": True}


def test_a_node_on_its_own_joins_by_a_rerun_of_site_yml_and_gets_a_replica_of_every_queue():
    """What adding a broker host does, played on the last node: it leaves the cluster (stop_app, the
    seed forgets it, reset), so it is a node on its own as a new host is, and the queues lose its
    replica; `site.yml --tags rabbitmq` joins it through the seed and grows every quorum queue onto
    it, changing nothing on the other nodes."""
    leaving, seed = BROKERS[-1], BROKERS[0]
    node = f"rabbit@{leaving}"
    host(leaving).run_expect([0], "rabbitmqctl stop_app")
    host(seed).run_expect([0], f"rabbitmqctl forget_cluster_node {node}")
    host(leaving).run_expect([0], "rabbitmqctl reset && rabbitmqctl start_app")
    assert nodes_running(leaving) == {node}
    assert all(node not in quorum_status()[queue]["members"] for queue in QUEUES)

    result = run_playbook("site.yml", {}, options=("--tags", "rabbitmq"))
    assert result.returncode == 0, result.stdout[-6000:]
    for name in BROKERS:
        assert nodes_running(name) == {f"rabbit@{broker}" for broker in BROKERS}
    deadline = time.monotonic() + 60
    while not all(node in quorum_status()[queue]["online"] for queue in QUEUES):
        assert time.monotonic() < deadline, quorum_status()
        time.sleep(1)
    for other in BROKERS[:-1]:
        assert re.search(rf"^{other}\s+: ok=\d+\s+changed=0 ", result.stdout, re.M), other


def test_a_broker_node_takes_erlang_distribution_from_the_other_nodes_only():
    """The firewall lets the nodes (and the CLI tools they call back) talk; another host is dropped."""
    dist_port = 25672
    for port in (4369, dist_port):
        assert connect(BROKERS[1], BROKERS[0], port) == "open", port
        assert connect(DATABASE, BROKERS[0], port) == "dropped", port
