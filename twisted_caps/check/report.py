# -*- test-case-name: tests.unit.test_check_report -*-
"""
The outcome of a run: one result per check, asserted on by id, printed one
line each, and written as JSON or as Gradescope's C{results.json}.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Width of the id column of the printed report.
ID_WIDTH = 20


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check; C{detail} says why it failed (empty on a pass)."""

    id: str
    passed: bool
    detail: str = ""

    def line(self) -> str:
        """The printed line: id, PASS or FAIL, and for a failure its detail."""
        if self.passed:
            return f"{self.id:<{ID_WIDTH}} PASS"
        return f"{self.id:<{ID_WIDTH}} FAIL {self.detail}"


@dataclass(frozen=True)
class CheckReport:
    """
    The results of the checks run against C{server} (C{H:P}) with
    C{profile}, in the order they ran. C{server_output} is what a server
    started by L{twisted_caps.check.grade_server} printed.
    """

    server: str
    profile: str
    results: tuple[CheckResult, ...]
    server_output: str = field(default="", compare=False)

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
        """The ids of the checks that failed."""
        return tuple(result.id for result in self.results if not result.passed)

    @property
    def all_passed(self) -> bool:
        """True when every check passed."""
        return not self.failed_ids

    def summary(self) -> str:
        """The last line of the printed report: C{N passed, M failed}."""
        return f"{len(self.passed_ids)} passed, {len(self.failed_ids)} failed"

    def text(self) -> str:
        """The printed report: one line per check, then the summary."""
        return "".join(f"{result.line()}\n" for result in self.results) + self.summary() + "\n"

    def to_json(self) -> dict[str, Any]:
        """The C{--json} document."""
        return {
            "server": self.server,
            "profile": self.profile,
            "checks": [
                {"id": result.id, "passed": result.passed, "detail": result.detail}
                for result in self.results
            ],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any], server_output: str = "") -> "CheckReport":
        """Read back a L{to_json} document."""
        results = tuple(
            CheckResult(str(check["id"]), bool(check["passed"]), str(check["detail"]))
            for check in document["checks"]
        )
        return cls(str(document["server"]), str(document["profile"]), results, server_output)

    def to_gradescope(self, weights: Mapping[str, float] | None = None) -> dict[str, Any]:
        """
        Gradescope's C{results.json}: one test per check, worth its weight
        (1 unless C{weights} says otherwise), all or nothing.
        """
        weights = weights or {}
        tests = []
        for result in self.results:
            worth = float(weights.get(result.id, 1.0))
            tests.append(
                {
                    "name": result.id,
                    "score": worth if result.passed else 0.0,
                    "max_score": worth,
                    "status": "passed" if result.passed else "failed",
                    "output": result.detail or "passed",
                }
            )
        return {
            "score": sum(test["score"] for test in tests),
            "output": f"caps-check {self.profile} against {self.server}: {self.summary()}",
            "tests": tests,
        }


def write_json(path: str, document: Mapping[str, Any]) -> None:
    """Write C{document} to C{path} as indented JSON (UTF-8)."""
    with open(path, "w", encoding="utf-8") as output:
        json.dump(document, output, indent=2, ensure_ascii=False)
        output.write("\n")
