"""Test runner output read into counts and failures (samples from real runs)."""

from __future__ import annotations

from mimiverse.agent.tools.testparse import parse

PYTEST = """\
.F
=================================== FAILURES ===================================
___________________________________ test_sub ___________________________________

    def test_sub():
>       assert 3 == 4
E       assert 3 == 4

tests/test_calc.py:6: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_sub - assert 3 == 4
ERROR tests/test_db.py::test_conn - ConnectionError: refused
!!!!!!!!!!!!!!!!!!!!!!!!!! stopping after 1 failures !!!!!!!!!!!!!!!!!!!!!!!!!!!
1 failed, 1 passed, 1 error, 2 warnings in 0.03s
"""

PYTEST_NO_MESSAGE = """\
________________________________ TestCalc.test_x ________________________________
E   ValueError: boom
=========================== short test summary info ============================
FAILED tests/test_calc.py::TestCalc::test_x
========================= 1 failed, 4 passed in 0.10s ==========================
"""

GO = """\
--- FAIL: TestAdd (0.00s)
    calc_test.go:9: add(2, 3) = -1, want 5
FAIL
FAIL\texample.com/calc\t0.002s
ok  \texample.com/util\t0.001s
FAIL\texample.com/broken [build failed]
FAIL
"""

CARGO = """\
running 2 tests
test tests::adds ... ok
test tests::subtracts ... FAILED

failures:

---- tests::subtracts stdout ----
thread 'tests::subtracts' panicked at src/lib.rs:12:9:
assertion `left == right` failed
  left: 4
 right: 5

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 1 test
test src/lib.rs - add (line 3) ... ok

test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.10s
"""

JEST = """\
 FAIL  ./sum.test.js
  ● sum › adds 1 + 2 to equal 3

    expect(received).toBe(expected)

Tests:       1 failed, 2 passed, 3 total
"""

MOCHA = """\
  2 passing (8ms)
  1 failing

  1) Array
       indexOf:
     AssertionError [ERR_ASSERTION]: -1 == 0
"""

TAP = "not ok 2 - subtracts\n# tests 3\n# pass 2\n# fail 1\n"


def test_pytest() -> None:
    report = parse(PYTEST)
    assert report.runner == "pytest"
    assert report.counts == {"failed": 1, "passed": 1, "errors": 1, "warnings": 2}
    assert [f.as_dict() for f in report.failures] == [
        {"test": "tests/test_calc.py::test_sub", "message": "assert 3 == 4"},
        {"test": "tests/test_db.py::test_conn", "message": "error: ConnectionError: refused"},
    ]
    assert report.summary() == "1 failed, 1 errors, 1 passed, 2 warnings"


def test_pytest_message_from_the_report_section() -> None:
    report = parse(PYTEST_NO_MESSAGE)
    assert report.counts == {"failed": 1, "passed": 4}
    assert report.failures[0].message == "ValueError: boom"


def test_pytest_no_tests() -> None:
    report = parse("\nno tests ran in 0.01s\n")
    assert report.runner == "pytest" and report.counts == {}


def test_go() -> None:
    report = parse(GO)
    assert report.runner == "go"
    assert report.counts["failed"] == 1 and report.counts["packages_ok"] == 1
    assert report.counts["packages_failed"] == 2
    assert report.failures[0].as_dict() == {
        "test": "TestAdd",
        "message": "calc_test.go:9: add(2, 3) = -1, want 5",
    }
    assert report.failures[1].test == "example.com/broken"


def test_cargo_sums_every_test_binary() -> None:
    report = parse(CARGO)
    assert report.counts == {"passed": 2, "failed": 1, "skipped": 1}
    assert report.failures[0].as_dict() == {
        "test": "tests::subtracts",
        "message": "assertion `left == right` failed",
    }


def test_javascript_runners() -> None:
    jest = parse(JEST)
    assert jest.counts == {"failed": 1, "passed": 2}
    assert jest.failures[0].test == "sum › adds 1 + 2 to equal 3"
    mocha = parse(MOCHA)
    assert mocha.counts == {"passed": 2, "failed": 1}
    assert mocha.failures[0].message.startswith("AssertionError")
    tap = parse(TAP)
    assert tap.counts == {"passed": 2, "failed": 1}
    assert tap.failures[0].test == "subtracts"


def test_unknown_output() -> None:
    report = parse("make: *** [all] Error 2\n")
    assert report.counts == {} and report.failures == [] and report.summary() == ""
