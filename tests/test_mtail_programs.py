"""The mtail program that turns nginx's metrics log (roles/nginx, nginx_metrics_log) into request
metrics compiles, and counts the lines nginx writes by site and status: run once over a sample log
with Debian's mtail (scripts/mtail --one_shot)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "roles" / "nginx" / "files" / "requests.mtail"
# What nginx writes with log_format <site>_metrics '<site> $status $request_time'.
LINES = [
    "shop 200 0.012",
    "shop 200 0.250",
    "shop 502 1.500",
    "shop_flower 404 0.003",
    "not a line of the metrics log",
]


def metrics(tmp_path: Path) -> dict[str, float]:
    progs = tmp_path / "progs"
    progs.mkdir()
    (progs / PROGRAM.name).write_text(PROGRAM.read_text())
    log = tmp_path / "shop.metrics.log"
    log.write_text("\n".join(LINES) + "\n")
    result = subprocess.run(
        [
            str(ROOT / "scripts" / "mtail"),
            "--one_shot",
            "--one_shot_format=prometheus",
            "--progs",
            str(progs),
            "--logs",
            str(log),
            "--logtostderr",
            "--address=127.0.0.1",
            "--port=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    samples = {}
    for line in result.stdout.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name.replace('prog="requests.mtail",', "")] = float(value)
    return samples


def test_the_requests_program_counts_each_line_by_site_and_status_and_skips_others(tmp_path):
    samples = metrics(tmp_path)
    assert samples['nginx_http_requests_total{site="shop",status="200"}'] == 2
    assert samples['nginx_http_requests_total{site="shop",status="502"}'] == 1
    assert samples['nginx_http_requests_total{site="shop_flower",status="404"}'] == 1
    assert sum(v for k, v in samples.items() if k.startswith("nginx_http_requests_total{")) == 4
    assert samples['nginx_http_request_duration_seconds_count{site="shop"}'] == 3
    assert samples['nginx_http_request_duration_seconds_sum{site="shop"}'] == 1.762
    assert samples['nginx_http_request_duration_seconds_bucket{site="shop",le="0.25"}'] == 2
