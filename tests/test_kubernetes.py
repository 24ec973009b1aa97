"""
deploy/kubernetes: the manifest's Deployment runs a valid caps command whose
TCP and UDP ports the container, its readiness probe and the Service name;
the Dockerfile beside it builds the manifest's image from the source tree.
"""

import os
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.operating.tap import Options
from twisted_caps.serving.config import TcpListener

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(PROJECT, "deploy", "kubernetes", "caps.yaml")
DOCKERFILE = os.path.join(PROJECT, "deploy", "kubernetes", "Dockerfile")
#: The command, in the manifest's comments and the docs, that builds the image.
BUILD = "docker build -f deploy/kubernetes/Dockerfile -t {image} ."


def instructions(path: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, as (keyword, arguments), comments left out."""
    with open(path) as file:
        lines = [line.strip() for line in file if line.strip() and not line.startswith("#")]
    return [
        (keyword, arguments) for keyword, _, arguments in (line.partition(" ") for line in lines)
    ]


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


class ImageTests(SynchronousTestCase):
    """The image is built from the tree: twisted-caps is on no package index yet."""

    def setUp(self) -> None:
        self.steps = instructions(DOCKERFILE)
        [self.container] = load()["Deployment"]["spec"]["template"]["spec"]["containers"]

    def test_copies_the_tree_and_installs_the_copy_with_tls(self) -> None:
        [copy] = [arguments for keyword, arguments in self.steps if keyword == "COPY"]
        source, target = copy.split()
        self.assertEqual(source, ".")
        runs = [arguments for keyword, arguments in self.steps if keyword == "RUN"]
        self.assertIn(f"pip install --no-cache-dir '{target}[tls]'", runs)
        self.assertNotIn("twisted-caps", " ".join(runs))

    def test_writes_the_plugin_cache_before_the_root_file_system_is_read_only(self) -> None:
        """twistd cannot write its plugin cache in the pod, so the image has it."""
        self.assertTrue(self.container["securityContext"]["readOnlyRootFilesystem"])
        keywords = [keyword for keyword, _ in self.steps]
        cache = self.steps.index(("RUN", "twistd --help > /dev/null"))
        self.assertLess(cache, keywords.index("USER"))

    def test_runs_as_the_user_the_manifest_names(self) -> None:
        pod = load()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
        [user] = [arguments for keyword, arguments in self.steps if keyword == "USER"]
        self.assertEqual(user, f"{pod['runAsUser']}:{pod['runAsGroup']}")

    def test_the_manifest_and_the_docs_say_how_to_build_its_image(self) -> None:
        build = BUILD.format(image=self.container["image"])
        with open(MANIFEST) as file:
            self.assertIn(f"#   {build}\n", file.read())
        with open(os.path.join(PROJECT, "docs", "deploying.md")) as file:
            self.assertIn(f"{build}\n", file.read())

    def test_the_copy_leaves_out_environments_builds_and_git(self) -> None:
        with open(os.path.join(PROJECT, ".dockerignore")) as file:
            ignored = file.read().splitlines()
        for pattern in (".git", ".venv*", "build", "dist", "docs/_build"):
            self.assertIn(pattern, ignored)
