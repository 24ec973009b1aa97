"""
twistd's --uid/--gid: the plugin binds a port below 1024 as root, then runs
as an unprivileged user and keeps serving.
"""

import os
import pwd
import socket

from twisted.trial.unittest import SkipTest, TestCase

from tests.servers import BIN, course_tcp_client, course_udp_client, start_process, wait_for

HOST = "127.0.0.1"


def free_privileged_port() -> int:
    """A port below 1024 that is free for both TCP and UDP on loopback."""
    for port in range(1023, 511, -1):
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind((HOST, port))
        except OSError:
            continue
        return port
    raise AssertionError("no free port between 512 and 1023 on 127.0.0.1")


def process_ids(pid: int) -> tuple[set[int], set[int]]:
    """The real, effective, saved and file-system uids and gids of a process."""
    fields: dict[str, set[int]] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, values = line.partition(":")
            if name in ("Uid", "Gid"):
                fields[name] = {int(value) for value in values.split()}
    return fields["Uid"], fields["Gid"]


class DropPrivilegesTests(TestCase):
    def test_binds_below_1024_then_serves_as_nobody(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("binding below 1024 and changing user need root")
        nobody = pwd.getpwnam("nobody")
        port = free_privileged_port()
        daemon = start_process(
            self,
            [
                os.path.join(BIN, "twistd"),
                "-n",
                "--pidfile=",
                "--uid=nobody",
                f"--gid={nobody.pw_gid}",
                "caps",
                "--tcp",
                f"tcp:{port}:interface={HOST}",
                "--udp",
                f"{HOST}:{port}",
            ],
        )
        self.assertEqual((daemon.tcp_port, daemon.udp_port), (port, port))
        pid = daemon.process.pid
        wait_for(lambda: process_ids(pid) == ({nobody.pw_uid}, {nobody.pw_gid}))
        self.assertEqual(course_tcp_client(port, b"hello world"), b"HELLO WORLD")
        self.assertEqual(course_udp_client(port, b"hello world"), b"HELLO WORLD")
        self.assertEqual(process_ids(pid), ({nobody.pw_uid}, {nobody.pw_gid}))
