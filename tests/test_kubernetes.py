"""
deploy/kubernetes: the manifest's Deployment runs a valid caps command whose
TCP and UDP ports the container, its readiness probe and the Service name.
"""

import os
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.operating.tap import Options
from twisted_caps.serving.config import TcpListener

MANIFEST = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "deploy",
    "kubernetes",
    "caps.yaml",
)


def load() -> dict[str, Any]:
    """The manifest's documents by kind."""
    with open(MANIFEST) as file:
        return {document["kind"]: document for document in yaml.safe_load_all(file)}


class ManifestTests(SynchronousTestCase):
    def setUp(self) -> None:
        documents = load()
        self.deployment = documents["Deployment"]
        self.service = documents["Service"]
        [self.container] = self.deployment["spec"]["template"]["spec"]["containers"]

    def test_command_is_caps_in_the_foreground_with_valid_options(self) -> None:
        command = self.container["command"]
        self.assertEqual(command[0], "twistd")
        self.assertIn("--nodaemon", command[: command.index("caps")])
        options = Options()
        options.parseOptions(command[command.index("caps") + 1 :])
        self.assertEqual(
            [t.description.split(":")[:2] for t in options.config.tcp], [["tcp", "1200"]]
        )
        self.assertEqual([(u.interface, u.port) for u in options.config.udp], [("", 1200)])
        self.assertEqual(options.config.metrics, TcpListener("tcp:9100"))

    def test_container_declares_tcp_and_udp_ports_the_command_serves(self) -> None:
        ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in self.container["ports"]}
        self.assertEqual(
            ports,
            {"caps-tcp": (1200, "TCP"), "caps-udp": (1200, "UDP"), "metrics": (9100, "TCP")},
        )

    def test_readiness_is_a_tcp_check_of_the_caps_port(self) -> None:
        self.assertEqual(self.container["readinessProbe"]["tcpSocket"], {"port": "caps-tcp"})

    def test_liveness_is_a_tcp_check_of_the_quiet_metrics_port(self) -> None:
        self.assertEqual(self.container["livenessProbe"]["tcpSocket"], {"port": "metrics"})

    def test_runs_unprivileged(self) -> None:
        pod = self.deployment["spec"]["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
        self.assertFalse(self.container["securityContext"]["allowPrivilegeEscalation"])

    def test_service_selects_the_pods_and_carries_tcp_and_udp(self) -> None:
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(self.deployment["spec"]["selector"]["matchLabels"], labels)
        self.assertEqual(self.service["spec"]["selector"], labels)
        ports = {(p["port"], p["protocol"]): p["targetPort"] for p in self.service["spec"]["ports"]}
        self.assertEqual(ports, {(1200, "TCP"): "caps-tcp", (1200, "UDP"): "caps-udp"})
