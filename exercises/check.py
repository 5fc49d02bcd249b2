"""Check a learner's copy of minidqn.py with the project's own tests, exercise by exercise.

    python exercises/check.py [DIR]                # every exercise (default DIR: exercises/work)
    python exercises/check.py DIR --exercise 9     # one (or a few) of them

Each exercise is checked on its own: the reference minidqn.py with that exercise's blocks taken from DIR's copy,
run through the tests of test_minidqn.py that the course names for it (the same tests that check the reference:
there is no second copy of the truth). So one exercise's mistake never fails another's check. For each it prints
pass, not started, or what failed: the test and its message (for a gradient, the first wrong entry; for Adam,
the step at which it parts from Kingma & Ba's Algorithm 1). The exit status is 0 only when every exercise
asked for passes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import course  # noqa: E402
from hypothesis import Phase, settings  # noqa: E402

# The state machines report their first failing run, unshrunk (shrinking takes long, and its smaller example is
# no clearer to a learner), and keep no database: a learner's mistakes are not replayed later. Loaded before any
# test module is imported, so its settings inherit this profile.
settings.register_profile("minidqn-check", phases=(Phase.explicit, Phase.generate), database=None)
settings.load_profile("minidqn-check")


class _Reports:
    """A pytest plugin that keeps each test's outcome and the first line of its failure."""

    def __init__(self) -> None:
        self.results = []  # (test name, "passed" | "failed" | "skipped", message)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            message = ""
            if report.outcome == "failed":
                crash = getattr(report.longrepr, "reprcrash", None)
                message = crash.message if crash is not None else str(report.longrepr).splitlines()[-1]
            name = report.nodeid.split("::", 1)[-1].replace("::runTest", "")
            self.results.append((name, report.outcome, message))

    def pytest_collectreport(self, report) -> None:
        if report.outcome == "failed":  # the copy does not even import (a syntax error, say)
            self.results.append(("importing minidqn.py", "failed", str(report.longrepr).strip().splitlines()[-1]))


def summary(message: str) -> str:
    """The line of a failure a learner can act on: its first line (with the next one when the first only says
    which error it is), without the failing example's trace."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "failed"
    first = lines[0]
    if first.rstrip(":") in ("AssertionError", "assert") or first.endswith(":") and len(lines) > 1:
        first = f"{first.rstrip(':')}: {lines[1]}"
    return first if len(first) <= 240 else first[:237] + "..."


def _forget_modules() -> None:
    """Drop minidqn, the tests and plots from sys.modules, so the next run imports the next module afresh."""
    for name in list(sys.modules):
        if name in ("minidqn", "test_minidqn", "plots") or name.endswith(".test_minidqn"):
            del sys.modules[name]


# pytest rewrites the asserts of test_minidqn.py on every import; its bytecode cache spares the repeats, also
# where PYTHONDONTWRITEBYTECODE is set. The cache goes to a temporary folder of this process, never the repo.
_BYTECODE = tempfile.TemporaryDirectory(prefix="minidqn-check-bytecode-")


def run_tests(module_source: str, tests: list) -> list:
    """Run `tests` (node ids of test_minidqn.py) with `module_source` as minidqn; return _Reports.results."""
    import pytest

    saved_bytecode = sys.dont_write_bytecode, sys.pycache_prefix
    with tempfile.TemporaryDirectory(prefix="minidqn-check-") as tmp:
        with open(os.path.join(tmp, "minidqn.py"), "w") as f:
            f.write(module_source)
        _forget_modules()
        sys.path[:0] = [tmp, course.ROOT]  # the module under test first; plots and the tests from the repo
        reports = _Reports()
        args = ["-q", "-p", "no:cacheprovider", "--color=no", "--import-mode=importlib", "-o", "addopts=",
                "--rootdir", course.ROOT, "-W", "ignore::UserWarning"]
        args += [os.path.join(course.ROOT, test) for test in tests]
        try:
            sys.dont_write_bytecode, sys.pycache_prefix = False, _BYTECODE.name
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pytest.main(args, plugins=[reports])
        finally:
            sys.dont_write_bytecode, sys.pycache_prefix = saved_bytecode
            del sys.path[:2]
            _forget_modules()
    return reports.results


def check_exercise(copy: str, reference: str, number: int, copy_name: str | None = "your minidqn.py") -> tuple:
    """("pass" | "not started" | "fail" | "waits", lines to print) for one exercise of the learner's copy."""
    exercise = course.BY_NUMBER[number]
    try:
        source = course.hybrid(reference, copy, number)
    except ValueError as e:
        return "fail", [str(e)]
    blocks = [lines for (n, _), lines in course.learner_blocks(copy).items() if n == number]
    if any(line.strip().startswith(f'raise NotImplementedError("exercise {number}:') for b in blocks for line in b):
        return "not started", []  # its block still raises, so every test of it would fail there
    try:
        compile(source, "<exercise>", "exec")  # not a real file name: Python would quote that file's line
    except SyntaxError as e:  # said with its line in the learner's copy, not in the module checked
        return "fail", [syntax_error(e, copy, number, copy_name)]
    results = run_tests(source, exercise.tests)
    failed = [(name, message) for name, outcome, message in results if outcome == "failed"]
    if not results:
        return "fail", ["no test ran: the course names tests that test_minidqn.py does not have"]
    if not failed:
        return "pass", []
    raised = [re.search(r"NotImplementedError: exercise (\d+)", message) for _, message in failed]
    if all(raised) and {int(m.group(1)) for m in raised} == {number}:
        return "not started", []
    return "fail", [f"{name}: {summary(message)}" for name, message in failed]


def syntax_error(error: SyntaxError, copy: str, number: int, copy_name: str | None) -> str:
    """A syntax error in exercise `number`'s blocks, with the line number it has in the learner's copy `copy_name`
    (the module checked is the reference around those blocks, so its own line numbers would mislead); None: the
    copy is only the blocks (a notebook's cells), and the line is quoted instead."""
    text = (error.text or "").rstrip()
    inside = False
    for lineno, line in enumerate(copy.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(f"{course.BEGIN} (exercise {number}:"):
            inside = True
        elif stripped.startswith(course.END):
            inside = False
        elif inside and text and line.rstrip() == text and copy_name is not None:
            return f"SyntaxError at line {lineno} of {copy_name}: {error.msg}: {stripped}"
    return f"SyntaxError in the block of exercise {number}: {error.msg}" + (f": {text.strip()}" if text else "")


def report(number: int, verdict: str, details: list) -> str:
    """What a check prints for one exercise (here and in the notebook): its line, then each detail."""
    title = course.BY_NUMBER[number].title
    return "\n".join([f"exercise {number:>2}  {title:<62} {verdict}"] + [f"      {line}" for line in details])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    course.add_arguments(parser, "check")
    args = parser.parse_args(argv)
    path = os.path.join(args.dir, "minidqn.py")
    try:
        with open(path) as f:
            copy = f.read()
    except OSError as e:
        if args.dir.isdigit() and not os.path.exists(args.dir):  # `check.py 6`: an exercise, not a folder
            print(f"error: {args.dir} is read as the copy's folder; to check exercise {args.dir}: "
                  f"python exercises/check.py --exercise {args.dir}", file=sys.stderr)
        else:
            print(f"error: cannot read {path} ({e.strerror}); write it first: python exercises/make.py {args.dir}",
                  file=sys.stderr)
        return 2
    with open(course.REFERENCE) as f:
        reference = f.read()
    numbers = args.exercise or sorted(course.BY_NUMBER)
    passed = 0
    for number in numbers:
        verdict, details = check_exercise(copy, reference, number)
        passed += verdict == "pass"
        print(report(number, verdict, details), flush=True)
    print(f"{passed} of {len(numbers)} passed")
    if passed == len(numbers) == len(course.EXERCISES):
        print(f"Every exercise passes: `python {path}` trains the CartPole demo with your code.")
    return 0 if passed == len(numbers) else 1


if __name__ == "__main__":
    sys.exit(main())
