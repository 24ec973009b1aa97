# -*- test-case-name: tests.test_check_autograder -*-
"""
The C{caps-autograder} command: C{bundle} writes Gradescope's autograder
zip from a clone of twisted-caps in one command; C{grade} is what the zip's
C{run_autograder} runs for each submission.
"""

import json
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from twisted.python import usage

from twisted_caps import __version__
from twisted_caps.check.autograder import (
    ROOT_VARIABLE,
    SETTINGS_NAME,
    AutograderSettings,
    build_wheel,
    grade_submission,
    source_tree,
    write_bundle,
)
from twisted_caps.check.checks import select_checks
from twisted_caps.check.command import parse_weight
from twisted_caps.check.started_server import PORT_PLACEHOLDER
from twisted_caps.check.target import PROFILES, Transport, chosen_transports
from twisted_caps.core.option_values import quoted, seconds

USAGE_ERROR = 2


class BundleOptions(usage.Options):
    """The options of C{caps-autograder bundle}."""

    synopsis = (
        '--server "python3 server.py {port}" [--profile P]\n'
        "           [--tcp-only | --udp-only] [--timeout S] [--weight ID=POINTS ...]\n"
        "           [--source DIR | --wheel FILE] [--output autograder.zip]"
    )
    longdesc = (
        "Write Gradescope's autograder zip: setup.sh, run_autograder, these settings "
        "and the twisted-caps wheel, built from the source tree (or --wheel). Upload "
        "the zip as the assignment's autograder; every submission's server is started "
        "with --server in the submission folder, its {port} replaced by a free port."
    )
    optParameters = [
        ["server", None, None, "The server's command line, with {port} where the port goes."],
        ["profile", None, "lecture", "Checks to run: lecture or full."],
        ["timeout", "t", "2", "Seconds each wait of a check may last."],
        ["source", None, None, "The twisted-caps source tree (default: the installed clone)."],
        ["wheel", None, None, "A twisted-caps wheel to bundle, instead of building one."],
        ["output", "o", "autograder.zip", "Where to write the zip."],
    ]
    optFlags = [
        ["tcp-only", None, "Run the TCP checks only."],
        ["udp-only", None, "Run the UDP checks only."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["weights"] = {}

    def opt_weight(self, value: str) -> None:
        """Points of check ID (ID=POINTS; default 1; repeatable)."""
        check_id, worth = parse_weight(value)
        self["weights"][check_id] = worth

    def postOptions(self) -> None:
        if not self["server"]:
            raise usage.UsageError("--server is required: the command that runs a submission")
        try:
            self["command"] = tuple(shlex.split(self["server"]))
        except ValueError as failure:
            raise usage.UsageError(f"--server: {failure}") from None
        if not self["command"] or not any(PORT_PLACEHOLDER in word for word in self["command"]):
            raise usage.UsageError(
                f"--server: {quoted(self['server'])} has no {PORT_PLACEHOLDER}, where the port goes"
            )
        if self["profile"] not in PROFILES:
            raise usage.UsageError(f"--profile: {quoted(self['profile'])} is not lecture or full")
        if self["tcp-only"] and self["udp-only"]:
            raise usage.UsageError("--tcp-only and --udp-only exclude each other")
        self["timeout"] = seconds(
            self["timeout"], "--timeout", "a number of seconds > 0 (at most a year)", positive=True
        )
        running = {check.id for check in select_checks(self["profile"], self.transports)}
        for check_id in self["weights"]:
            if check_id not in running:
                raise usage.UsageError(
                    f"--weight: {check_id} is not run with --profile {self['profile']}"
                    + (" and these transports" if len(self.transports) == 1 else "")
                )
        if self["source"] is not None and self["wheel"] is not None:
            raise usage.UsageError("--source and --wheel exclude each other")
        if self["wheel"] is not None:
            if not os.path.isfile(self["wheel"]):
                raise usage.UsageError(f"--wheel: no file {self['wheel']}")
            if not re.fullmatch(r"twisted_caps-[^-]+-py3-none-any\.whl", Path(self["wheel"]).name):
                raise usage.UsageError(
                    f"--wheel: {quoted(Path(self['wheel']).name)} is not a twisted-caps wheel "
                    "(twisted_caps-VERSION-py3-none-any.whl)"
                )
        if self["wheel"] is None and self["source"] is None and source_tree() is None:
            raise usage.UsageError(
                "twisted-caps was not installed from a source tree: give --source DIR "
                "(a clone) or --wheel FILE"
            )
        folder = os.path.dirname(os.path.abspath(self["output"]))
        if os.path.isdir(self["output"]):
            raise usage.UsageError(f"--output: {self['output']} is a directory")
        if not os.path.isdir(folder):
            raise usage.UsageError(f"--output: no directory {folder}")
        if not os.access(folder, os.W_OK):
            raise usage.UsageError(f"--output: {folder} is not writable")

    def parseArgs(self, *extra: str) -> None:
        if extra:
            raise usage.UsageError(f"unexpected argument {quoted(extra[0])}")

    @property
    def transports(self) -> tuple[Transport, ...]:
        """The transports whose checks run."""
        return chosen_transports(self["tcp-only"], self["udp-only"])

    @property
    def settings(self) -> AutograderSettings:
        """The settings the zip carries."""
        return AutograderSettings(
            self["command"],
            self["profile"],
            self.transports,
            self["timeout"],
            dict(self["weights"]),
        )


class GradeOptions(usage.Options):
    """The options of C{caps-autograder grade}, which C{run_autograder} runs."""

    synopsis = "[--root DIR]"
    longdesc = (
        "Grade the submission in ROOT/submission with the settings in ROOT/source, "
        "print the report and write ROOT/results/results.json (what run_autograder does)."
    )
    optParameters = [
        [
            "root",
            None,
            None,
            f"Gradescope's /autograder (default: ${ROOT_VARIABLE} or /autograder).",
        ]
    ]

    def postOptions(self) -> None:
        root = Path(self["root"] or os.environ.get(ROOT_VARIABLE) or "/autograder")
        for folder in ("source", "submission"):
            if not (root / folder).is_dir():
                raise usage.UsageError(f"no directory {root / folder}")
        if not (root / "source" / SETTINGS_NAME).is_file():
            raise usage.UsageError(f"no {root / 'source' / SETTINGS_NAME}: unpack the zip there")
        self["root"] = root


class AutograderOptions(usage.Options):
    """The options of C{caps-autograder}: a subcommand and its options."""

    synopsis = "Usage: caps-autograder"
    subCommands = [
        ["bundle", None, BundleOptions, "Write Gradescope's autograder zip."],
        ["grade", None, GradeOptions, "Grade a submission (what run_autograder runs)."],
    ]

    def opt_version(self) -> None:
        """Print caps-autograder's version and exit."""
        print(f"caps-autograder (twisted-caps) {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a subcommand: bundle or grade")


def bundle(options: BundleOptions) -> None:
    """Build (or take) the wheel and write the zip; say what it holds."""
    with tempfile.TemporaryDirectory(prefix="caps-autograder-") as scratch:
        if options["wheel"] is not None:
            wheel = Path(options["wheel"])
        else:
            source = Path(options["source"]) if options["source"] else source_tree()
            assert source is not None  # postOptions refused an install without a source tree
            try:
                wheel = build_wheel(source, Path(scratch))
            except RuntimeError as failure:
                sys.stderr.write(f"caps-autograder: {failure}\n")
                raise SystemExit(1) from None
        settings = options.settings
        write_bundle(Path(options["output"]), settings, wheel)
    print(
        f"wrote {options['output']}: setup.sh, run_autograder, {wheel.name}; "
        f"server {settings.shown_command}, profile {settings.profile}, "
        f"{' and '.join(transport.upper() for transport in settings.transports)}"
    )


def grade(options: GradeOptions) -> None:
    """Grade the submission and write C{results/results.json}."""
    root: Path = options["root"]
    (root / "results").mkdir(exist_ok=True)
    try:
        results, printed = grade_submission(root)
    except RuntimeError as failure:  # caps-check itself could not run
        results = {"score": 0.0, "output": f"the autograder could not grade: {failure}"}
        printed = results["output"] + "\n"
    print(printed, end="")
    with open(root / "results" / "results.json", "w", encoding="utf-8") as document:
        json.dump(results, document, indent=2, ensure_ascii=False)
        document.write("\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point of C{caps-autograder}."""
    options = AutograderOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as failure:
        sys.stderr.write(f"caps-autograder: {failure} (see --help)\n")
        raise SystemExit(USAGE_ERROR) from None
    if options.subCommand == "bundle":
        bundle(options.subOptions)
    else:
        grade(options.subOptions)
