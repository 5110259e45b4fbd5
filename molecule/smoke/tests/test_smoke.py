def test_systemd_is_pid1(host):
    assert host.check_output("ps -p 1 -o comm=") == "systemd"
    assert host.package("curl").is_installed
