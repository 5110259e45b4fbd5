"""Certificates from an ACME CA: certbot (roles/acme) got the site's certificate from pebble, a test
CA on this host, over HTTP-01 through nginx; nginx serves it; a forced renewal reloads nginx and no
request fails meanwhile."""

import re
import shlex

import dcs_testlib
import pytest

DOMAIN = "web.dcs.test"
PEBBLE_CA = "/etc/pebble/cert.pem"
# Requests during the renewal; they stop when this file appears.
LOAD = """
import os, ssl, sys, time, urllib.request
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
ok = failed = 0
while not os.path.exists(sys.argv[1]):
    try:
        with urllib.request.urlopen("https://127.0.0.1/healthz", context=context, timeout=10) as r:
            ok += r.status == 200
            failed += r.status != 200
    except Exception:
        failed += 1
    time.sleep(0.02)
open(sys.argv[2], "w").write(f"{ok} {failed}")
"""


def served_certificate(host) -> str:
    """The certificate nginx presents for the domain, as openssl prints it."""
    return host.check_output(
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} </dev/null 2>/dev/null"
        " | openssl x509 -noout -issuer -serial -ext subjectAltName"
    )


@pytest.fixture(scope="module")
def pebble_root(host) -> str:
    """Pebble's root CA (it makes a new one at each start), for verifying the served chain."""
    host.check_output(
        f"curl -sf --cacert {PEBBLE_CA} https://localhost:15000/roots/0 -o /tmp/pebble-root.pem"
    )
    return "/tmp/pebble-root.pem"


def test_nginx_serves_the_certificate_the_acme_ca_issued_for_the_domain(host, pebble_root):
    served = served_certificate(host)
    assert "Pebble Intermediate CA" in served, served
    assert f"DNS:{DOMAIN}" in served, served
    verify = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} -CAfile {pebble_root}"
        f" -verify_hostname {DOMAIN} -verify_return_error </dev/null"
    )
    assert verify.rc == 0 and "Verify return code: 0 (ok)" in verify.stdout, verify.stdout


def test_certbot_renews_by_its_timer_with_the_deploy_hook_and_the_cas_bundle(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    renewal = host.file(f"/etc/letsencrypt/renewal/{DOMAIN}.conf").content_string
    assert f"renew_hook = /usr/local/sbin/dcs-acme-deploy-{DOMAIN}" in renewal
    assert "server = https://localhost:14000/dir" in renewal
    environment = host.check_output("systemctl show -P Environment certbot.service")
    assert f"REQUESTS_CA_BUNDLE={PEBBLE_CA}" in environment


def test_a_forced_renewal_reloads_nginx_with_the_new_certificate_and_fails_no_request(host):
    before = re.search(r"serial=(\w+)", served_certificate(host)).group(1)
    nginx_pid = host.check_output("systemctl show -P MainPID nginx.service")
    host.run("rm -f /tmp/acme-load.stop /tmp/acme-load.out")
    dcs_testlib.start_unit(
        host, "acme-load", f"python3 -c {shlex.quote(LOAD)} /tmp/acme-load.stop /tmp/acme-load.out"
    )
    try:
        renewed = host.run(
            f"REQUESTS_CA_BUNDLE={PEBBLE_CA} certbot renew --force-renewal --no-random-sleep-on-renew"
            f" --cert-name {DOMAIN}"
        )
        assert renewed.rc == 0, renewed.stdout + renewed.stderr
    finally:
        host.run("touch /tmp/acme-load.stop")
    host.run("for i in $(seq 50); do test -s /tmp/acme-load.out && break; sleep 0.2; done")
    ok, failed = map(int, host.file("/tmp/acme-load.out").content_string.split())
    dcs_testlib.drill_report(f"drill acme renewal: requests {ok + failed}, failed {failed}")
    assert ok > 0 and failed == 0, (ok, failed)
    after = re.search(r"serial=(\w+)", served_certificate(host)).group(1)
    assert after != before, "nginx serves the renewed certificate"
    # Reloaded, not restarted: the same master process.
    assert host.check_output("systemctl show -P MainPID nginx.service") == nginx_pid
