"""Read test runner output: counts, failing tests and their messages.

Each parser knows one runner's summary format (pytest, go test, cargo test, jest/vitest,
mocha, TAP). ``parse`` tries them in turn, since the formats identify themselves; a
command whose output none of them recognise gets empty counts and is judged by its exit
code alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Failure:
    """One failing test and the line that says why."""

    test: str
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        """``{"test", "message"}``."""
        return {"test": self.test, "message": self.message}


@dataclass
class TestReport:
    """What a test run found."""

    __test__ = False  # not a pytest test class

    runner: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def summary(self) -> str:
        """``"2 failed, 3 passed"`` (failures first), or ``""`` when nothing was counted."""
        order = ["failed", "errors", "passed", "skipped", "xfailed", "xpassed", "todo"]
        keys = [k for k in order if self.counts.get(k)]
        keys += [k for k in self.counts if k not in order and self.counts[k]]
        return ", ".join(f"{self.counts[k]} {k}" for k in keys)

    def as_dict(self) -> dict[str, Any]:
        """Counts and failures as plain data."""
        return {
            "runner": self.runner,
            "counts": dict(self.counts),
            "failures": [f.as_dict() for f in self.failures],
        }


def parse(output: str) -> TestReport:
    """The first parser that recognises ``output`` wins."""
    for parser in PARSERS:
        report = parser(output)
        if report is not None:
            return report
    return TestReport()


# --- pytest ----------------------------------------------------------------------------

_PYTEST_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|warnings?|deselected|"
    r"rerun)(?:, )?)+)\s+in\s+[\d.]+s",
    re.MULTILINE,
)
_PYTEST_NO_TESTS = re.compile(r"^=*\s*no tests ran in [\d.]+s", re.MULTILINE)
_PYTEST_SHORT = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", re.MULTILINE)
_PYTEST_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$", re.MULTILINE)
_PYTEST_NAMES = {"error": "errors", "warning": "warnings"}


def parse_pytest(output: str) -> TestReport | None:
    """``1 failed, 2 passed in 0.03s`` and the ``FAILED id - message`` short summary."""
    summaries = _PYTEST_SUMMARY.findall(output)
    if not summaries:
        return TestReport("pytest") if _PYTEST_NO_TESTS.search(output) else None
    counts: dict[str, int] = {}
    for part in summaries[-1].split(", "):
        number, _, name = part.strip().partition(" ")
        counts[_PYTEST_NAMES.get(name, name)] = int(number)
    failures = []
    for kind, test, message in _PYTEST_SHORT.findall(output):
        text = message.strip() or _pytest_error_line(output, test)
        failures.append(Failure(test, text if kind == "FAILED" else f"error: {text}".strip()))
    return TestReport("pytest", counts, failures)


def _pytest_error_line(output: str, test: str) -> str:
    """The first ``E   …`` line in the report section of ``test``."""
    name = test.split("::", 1)[-1].replace("::", ".")
    sections = list(_PYTEST_SECTION.finditer(output))
    for i, match in enumerate(sections):
        if match.group(1).strip() not in (name, name.rsplit(".", 1)[-1]):
            continue
        end = sections[i + 1].start() if i + 1 < len(sections) else len(output)
        for line in output[match.end() : end].splitlines():
            if line.startswith("E "):
                return line[1:].strip()
    return ""


# --- go test ---------------------------------------------------------------------------

_GO_FAIL = re.compile(r"^\s*--- FAIL: (\S+)", re.MULTILINE)
_GO_PASS = re.compile(r"^\s*--- PASS: (\S+)", re.MULTILINE)
_GO_OK_PKG = re.compile(r"^ok\s+(\S+)", re.MULTILINE)
_GO_FAIL_PKG = re.compile(r"^FAIL\s+(\S+)\s", re.MULTILINE)
_GO_BUILD = re.compile(r"^FAIL\s+(\S+) \[(build failed|setup failed)\]", re.MULTILINE)


def parse_go(output: str) -> TestReport | None:
    """``--- FAIL: TestX`` lines and ``ok``/``FAIL`` package lines."""
    ok_pkgs, failed_pkgs = _GO_OK_PKG.findall(output), _GO_FAIL_PKG.findall(output)
    fails = _GO_FAIL.findall(output)
    if not (ok_pkgs or failed_pkgs or fails):
        return None
    counts = {"failed": len(fails), "passed": len(_GO_PASS.findall(output))}
    counts["packages_ok"], counts["packages_failed"] = len(ok_pkgs), len(failed_pkgs)
    failures = [Failure(name, _go_message(output, name)) for name in fails]
    failures += [Failure(pkg, why) for pkg, why in _GO_BUILD.findall(output)]
    return TestReport("go", counts, failures)


def _go_message(output: str, name: str) -> str:
    """The first indented ``file_test.go:12: message`` line after ``--- FAIL: name``."""
    start = output.find(f"--- FAIL: {name}")
    for line in output[start:].splitlines()[1:6]:
        if re.match(r"^\s+\S+\.go:\d+: ", line):
            return line.strip()
    return ""


# --- cargo test ------------------------------------------------------------------------

_CARGO_RESULT = re.compile(
    r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored", re.MULTILINE
)
_CARGO_FAILED = re.compile(r"^test (\S+) \.\.\. FAILED$", re.MULTILINE)


def parse_cargo(output: str) -> TestReport | None:
    """``test result:`` lines (one per test binary, summed) and ``test x ... FAILED``."""
    results = _CARGO_RESULT.findall(output)
    if not results:
        return None
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for passed, failed, ignored in results:
        counts["passed"] += int(passed)
        counts["failed"] += int(failed)
        counts["skipped"] += int(ignored)
    names = list(dict.fromkeys(_CARGO_FAILED.findall(output)))
    return TestReport("cargo", counts, [Failure(n, _cargo_message(output, n)) for n in names])


def _cargo_message(output: str, name: str) -> str:
    """The panic message in the ``---- name stdout ----`` section."""
    start = output.find(f"---- {name} stdout ----")
    if start < 0:
        return ""
    lines = output[start:].splitlines()[1:8]
    for i, line in enumerate(lines):
        if "panicked at" in line:
            after = line.split("panicked at", 1)[1].strip()
            if after.endswith(":") and i + 1 < len(lines):  # Rust ≥ 1.73: message below
                return lines[i + 1].strip()
            return after
    return ""


# --- JavaScript: jest, vitest, mocha, TAP (node --test) ----------------------------------

_JEST = re.compile(r"^Tests:\s+(.+?), (\d+) total", re.MULTILINE)
_JEST_FAIL = re.compile(r"^\s+● (.+?)$", re.MULTILINE)
_VITEST = re.compile(r"^\s*Tests\s+(.+?) \((\d+)\)", re.MULTILINE)
_VITEST_FAIL = re.compile(r"^\s*(?:FAIL|×|✗)\s+(.+?)$", re.MULTILINE)
_MOCHA_PASS = re.compile(r"^\s+(\d+) passing", re.MULTILINE)
_MOCHA_FAIL = re.compile(r"^\s+(\d+) failing", re.MULTILINE)
_MOCHA_PENDING = re.compile(r"^\s+(\d+) pending", re.MULTILINE)
_MOCHA_CASE = re.compile(r"^\s+\d+\) (.+?):?\n(?:\s+(.+?):\n)?\s+(\w*Error.*)$", re.MULTILINE)
_TAP = re.compile(r"^# (pass|fail|skipped|skip|todo) (\d+)$", re.MULTILINE)
_TAP_FAIL = re.compile(r"^not ok \d+ - (.+)$", re.MULTILINE)
_COUNT = re.compile(r"(\d+) (\w+)")


def parse_js(output: str) -> TestReport | None:
    """jest's ``Tests:`` line, vitest's ``Tests`` line, mocha's passing/failing, TAP."""
    if match := _JEST.search(output):
        counts = {name: int(n) for n, name in _COUNT.findall(match.group(1))}
        fails = [Failure(t.strip()) for t in dict.fromkeys(_JEST_FAIL.findall(output))]
        return TestReport("jest", counts, fails)
    if match := _VITEST.search(output):
        counts = {name: int(n) for n, name in _COUNT.findall(match.group(1).replace("|", ","))}
        return TestReport("vitest", counts, [Failure(t) for t in _VITEST_FAIL.findall(output)])
    if _MOCHA_PASS.search(output) or _MOCHA_FAIL.search(output):
        counts = {}
        for key, pattern in (("passed", _MOCHA_PASS), ("failed", _MOCHA_FAIL)):
            if m := pattern.search(output):
                counts[key] = int(m.group(1))
        if m := _MOCHA_PENDING.search(output):
            counts["skipped"] = int(m.group(1))
        cases = _MOCHA_CASE.findall(output)
        fails = [Failure(" ".join(p for p in (a, b) if p), msg) for a, b, msg in cases]
        return TestReport("mocha", counts, fails)
    tap = _TAP.findall(output)
    if tap:
        names = {"pass": "passed", "fail": "failed", "skip": "skipped", "skipped": "skipped"}
        counts = {names.get(k, k): int(n) for k, n in tap}
        return TestReport("tap", counts, [Failure(t) for t in _TAP_FAIL.findall(output)])
    return None


PARSERS: tuple[Callable[[str], TestReport | None], ...] = (
    parse_pytest,
    parse_cargo,
    parse_go,
    parse_js,
)
