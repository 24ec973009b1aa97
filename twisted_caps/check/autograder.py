# -*- test-case-name: tests.test_check_autograder -*-
"""
Gradescope's autograder in one zip: C{setup.sh}, C{run_autograder}, the
settings (server command, profile, transports, timeout, weights) and the
twisted-caps wheel, so that an image built from the zip needs no package
index that has twisted-caps.

Gradescope's layout (its "Autograder Specifications"): the zip is unpacked
into C{/autograder/source}, C{setup.sh} runs once when the image is built,
and for each submission C{run_autograder} runs with the student's files in
C{/autograder/submission} and must write C{/autograder/results/results.json}.
The scripts read the root from L{ROOT_VARIABLE} when it is set, so the same
zip can be tried in any folder laid out the same way.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted_caps.check.grader import grade_server
from twisted_caps.check.started_server import PORT_PLACEHOLDER
from twisted_caps.check.target import Profile, Transport

#: The environment variable naming the root Gradescope calls C{/autograder}.
ROOT_VARIABLE = "CAPS_AUTOGRADER_ROOT"
#: The settings file, in the zip and in C{source/}.
SETTINGS_NAME = "caps-autograder.json"
#: The folder of the zip that holds the twisted-caps wheel.
WHEELS = "wheels"
#: The virtual environment C{setup.sh} makes, under the root.
VENV = "caps-venv"
#: The most characters of the server's output put in C{results.json}.
SERVER_OUTPUT_LIMIT = 2000
#: What a source tree must hold to build the wheel, relative to its top.
SOURCE_FILES = ("pyproject.toml", "setup.cfg", "README.md", "twisted_caps", "twisted_plugins")

SETUP_SH = f"""#!/usr/bin/env bash
# Run once by Gradescope when it builds the autograder's image: a virtual
# environment with twisted-caps from the wheel in this zip (its dependencies,
# Twisted and prometheus_client, from the package index).
set -euo pipefail
root="${{{ROOT_VARIABLE}:-/autograder}}"
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "twisted-caps needs Python 3.10 or later; this image has $(python3 -V 2>&1):" \\
        "choose an Ubuntu 22.04 base image or later" >&2
    exit 1
fi
python3 -m venv "$root/{VENV}"
"$root/{VENV}/bin/python" -m pip install -q --disable-pip-version-check \\
    "$root"/source/{WHEELS}/twisted_caps-*.whl
"""

RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Run by Gradescope for each submission: start the student's server in the
# submission folder, check it with caps-check, write results/results.json.
set -euo pipefail
root="${{{ROOT_VARIABLE}:-/autograder}}"
exec "$root/{VENV}/bin/caps-autograder" grade --root "$root"
"""


@dataclass(frozen=True)
class AutograderSettings:
    """
    What the autograder grades with: the server's C{command} (run in the
    submission folder, every C{{port}} replaced by the port), the
    C{profile}, the C{transports} checked, the C{timeout} of each wait,
    and the points of each check in C{weights} (1 for those not named).
    """

    command: tuple[str, ...]
    profile: Profile = "lecture"
    transports: tuple[Transport, ...] = ("tcp", "udp")
    timeout: float = 2.0
    weights: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The settings file's document."""
        return {
            "command": list(self.command),
            "profile": self.profile,
            "transports": list(self.transports),
            "timeout": self.timeout,
            "weights": dict(self.weights),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "AutograderSettings":
        """Read back a L{to_json} document."""
        return cls(
            command=tuple(str(word) for word in document["command"]),
            profile=document["profile"],
            transports=tuple(document["transports"]),
            timeout=float(document["timeout"]),
            weights={str(key): float(value) for key, value in document["weights"].items()},
        )

    @property
    def shown_command(self) -> str:
        """The server's command as a shell would read it."""
        return shlex.join(self.command).replace(f"'{PORT_PLACEHOLDER}'", PORT_PLACEHOLDER)


def source_tree() -> Path | None:
    """
    The source tree twisted-caps was installed from (a clone installed with
    C{pip install -e}), or None when it was installed from a wheel.
    """
    top = Path(__file__).resolve().parent.parent.parent
    if all((top / name).exists() for name in SOURCE_FILES):
        return top
    return None


def build_wheel(source: Path, into: Path) -> Path:
    """
    Build twisted-caps' wheel from the source tree C{source} into the
    folder C{into} and return its path. The tree is copied first, so the
    build leaves nothing in it.

    @raise RuntimeError: if C{source} is not a twisted-caps source tree or
        pip cannot build it (pip's last lines).
    """
    missing = [name for name in SOURCE_FILES if not (source / name).exists()]
    if missing:
        raise RuntimeError(f"{source} is not a twisted-caps source tree (no {', '.join(missing)})")
    with tempfile.TemporaryDirectory(prefix="caps-wheel-") as scratch:
        copy = Path(scratch) / "twisted-caps"
        copy.mkdir()
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in SOURCE_FILES:
            if (source / name).is_dir():
                shutil.copytree(source / name, copy / name, ignore=skip)
            else:
                shutil.copy2(source / name, copy / name)
        built = Path(scratch) / "wheel"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(built), str(copy)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        wheels = sorted(built.glob("twisted_caps-*.whl"))
        if done.returncode or not wheels:
            last = " ".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"pip could not build the wheel: {last or 'no wheel written'}")
        into.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], into / wheels[0].name))


def write_bundle(path: Path, settings: AutograderSettings, wheel: Path) -> None:
    """
    Write Gradescope's autograder zip to C{path}: C{setup.sh} and
    C{run_autograder} at its root (executable), the settings file and the
    wheel in L{WHEELS}.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        _add(bundle, "setup.sh", SETUP_SH, 0o755)
        _add(bundle, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add(bundle, SETTINGS_NAME, json.dumps(settings.to_json(), indent=2) + "\n", 0o644)
        bundle.write(wheel, f"{WHEELS}/{wheel.name}")


def _add(bundle: zipfile.ZipFile, name: str, text: str, mode: int) -> None:
    """Add a regular file C{name} holding C{text}, with permissions C{mode}, to C{bundle}."""
    entry = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    entry.external_attr = (0o100000 | mode) << 16  # unzip reads the mode from here
    entry.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(entry, text)


def grade_submission(root: Path) -> tuple[dict[str, Any], str]:
    """
    Grade the submission in C{root/submission} with the settings in
    C{root/source}, as C{run_autograder} does: return Gradescope's
    C{results.json} document and the text to print (caps-check's lines and
    the server's output).
    """
    with open(root / "source" / SETTINGS_NAME, encoding="utf-8") as document:
        settings = AutograderSettings.from_json(json.load(document))
    started = time.monotonic()
    here = os.getcwd()
    os.chdir(root / "submission")  # the server's files are named from there
    try:
        report = grade_server(
            settings.command, settings.profile, settings.transports, settings.timeout
        )
    finally:
        os.chdir(here)
    results = report.to_gradescope(settings.weights)
    output = report.server_output
    if len(output) > SERVER_OUTPUT_LIMIT:
        output = "..." + output[-SERVER_OUTPUT_LIMIT:]
    if output.strip():
        results["output"] += f"\nThe server ({settings.shown_command}) printed:\n{output}"
    results["execution_time"] = round(time.monotonic() - started)
    results["stdout_visibility"] = "visible"
    for test in results["tests"]:
        test["visibility"] = "visible"
    return results, report.text() + (f"server output:\n{output}" if output.strip() else "")
