# -*- test-case-name: tests.unit.test_check_report -*-
"""
The outcome of a run: one result per check, asserted on by id, printed one
line each, and written as JSON or as Gradescope's C{results.json}.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: Width of the id column of the printed report.
ID_WIDTH = 20
#: How a check that did not pass went: it found a fault ("failed"), the
#: server stopped during it ("crashed"), or it could not judge the server
#: because the server had stopped or never started ("not graded").
NotPassed = Literal["failed", "crashed", "not graded"]
#: The word of the printed line for each verdict.
WORDS = {"passed": "PASS", "failed": "FAIL", "crashed": "FAIL", "not graded": "SKIP"}


@dataclass(frozen=True)
class CheckResult:
    """
    The verdict of one check; C{detail} says why it did not pass (empty on
    a pass). C{server_output} is the end of the output of a server that
    stopped during this check (a server caps-check started itself).
    """

    id: str
    passed: bool
    detail: str = ""
    kind: NotPassed = "failed"
    server_output: str = ""

    @property
    def verdict(self) -> str:
        """C{passed}, C{failed}, C{crashed} or C{not graded}."""
        return "passed" if self.passed else self.kind

    def line(self) -> str:
        """The printed line: id, PASS, FAIL or SKIP, and for a failure its detail."""
        if self.passed:
            return f"{self.id:<{ID_WIDTH}} PASS"
        return f"{self.id:<{ID_WIDTH}} {WORDS[self.kind]} {self.detail}"


def not_graded(check_id: str, reason: str) -> CheckResult:
    """The result of a check that could not judge the server, for C{reason}."""
    return CheckResult(check_id, False, f"not graded: {reason}", "not graded")


@dataclass(frozen=True)
class CheckReport:
    """
    The results of the checks run against C{server} (C{H:P}) with
    C{profile}, in the order they ran. C{server_output} is the end of what
    a server that caps-check started printed; C{start_failure} says why
    such a server did not start (empty when it did, or was not started).
    """

    server: str
    profile: str
    results: tuple[CheckResult, ...]
    server_output: str = field(default="", compare=False)
    start_failure: str = ""

    def __getitem__(self, check_id: str) -> CheckResult:
        for result in self.results:
            if result.id == check_id:
                return result
        raise KeyError(f"no check {check_id!r} in this report (ran: {', '.join(self.ids)})")

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of the checks that ran, in order."""
        return tuple(result.id for result in self.results)

    def passed(self, check_id: str) -> bool:
        """Whether check C{check_id} passed; C{KeyError} if it did not run."""
        return self[check_id].passed

    @property
    def passed_ids(self) -> tuple[str, ...]:
        """The ids of the checks that passed."""
        return tuple(result.id for result in self.results if result.passed)

    @property
    def failed_ids(self) -> tuple[str, ...]:
        """The ids of the checks that did not pass (not graded ones included)."""
        return tuple(result.id for result in self.results if not result.passed)

    @property
    def not_graded_ids(self) -> tuple[str, ...]:
        """The ids of the checks that could not judge the server."""
        return tuple(result.id for result in self.results if result.verdict == "not graded")

    @property
    def all_passed(self) -> bool:
        """True when every check passed."""
        return not self.failed_ids

    def summary(self) -> str:
        """The last line of the printed report: C{N passed, M failed[, K not graded]}."""
        skipped = len(self.not_graded_ids)
        counts = f"{len(self.passed_ids)} passed, {len(self.failed_ids) - skipped} failed"
        return f"{counts}, {skipped} not graded" if skipped else counts

    def text(self) -> str:
        """
        The printed report: one line per check, then the summary; for a
        server that did not start, why, once, instead of the checks' lines.
        """
        if self.start_failure:
            return f"{self.start_failure}\n{self.summary()}\n"
        return "".join(f"{result.line()}\n" for result in self.results) + self.summary() + "\n"

    def to_json(self) -> dict[str, Any]:
        """The C{--json} document."""
        return {
            "server": self.server,
            "profile": self.profile,
            "start_failure": self.start_failure,
            "server_output": self.server_output,
            "checks": [
                {
                    "id": result.id,
                    "passed": result.passed,
                    "verdict": result.verdict,
                    "detail": result.detail,
                    "server_output": result.server_output,
                }
                for result in self.results
            ],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any], server_output: str = "") -> "CheckReport":
        """Read back a L{to_json} document (C{server_output} when it has none)."""
        results = tuple(
            CheckResult(
                str(check["id"]),
                bool(check["passed"]),
                str(check["detail"]),
                "failed" if check["passed"] else check.get("verdict", "failed"),
                str(check.get("server_output", "")),
            )
            for check in document["checks"]
        )
        return cls(
            str(document["server"]),
            str(document["profile"]),
            results,
            str(document.get("server_output") or server_output),
            str(document.get("start_failure", "")),
        )

    def to_gradescope(self, weights: Mapping[str, float] | None = None) -> dict[str, Any]:
        """
        Gradescope's C{results.json}: one test per check, worth its weight
        (1 unless C{weights} says otherwise), all or nothing. A check's
        output is its detail, and the end of the server's output when the
        server stopped during it; the summary output says why a server did
        not start and ends with the end of its output.
        """
        weights = weights or {}
        tests = []
        for result in self.results:
            worth = float(weights.get(result.id, 1.0))
            output = result.detail or "passed"
            if result.server_output:
                output += f"\n\nThe server's output ended with:\n{result.server_output}"
            tests.append(
                {
                    "name": result.id,
                    "score": worth if result.passed else 0.0,
                    "max_score": worth,
                    "status": "passed" if result.passed else "failed",
                    "output": output,
                }
            )
        summary = f"caps-check {self.profile} against {self.server}: {self.summary()}"
        if self.start_failure:
            summary += f"\n{self.start_failure}"
        if self.server_output:
            summary += f"\n\nThe server's output ended with:\n{self.server_output}"
        return {"score": sum(test["score"] for test in tests), "output": summary, "tests": tests}


def write_json(path: str, document: Mapping[str, Any]) -> None:
    """Write C{document} to C{path} as indented JSON (UTF-8)."""
    with open(path, "w", encoding="utf-8") as output:
        json.dump(document, output, indent=2, ensure_ascii=False)
        output.write("\n")
