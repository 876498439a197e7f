"""pytest plugin: appends "start <nodeid>" and "<outcome> <nodeid>" lines to $PYTEST_PROGRESS_FILE.

Written as each test starts and ends (flushed), so a process that dies mid-suite (as under
compute-sanitizer) still says which test it was running. Used by scripts/sanitize_suite.py:
``python -m pytest -p pytest_progress`` with ``scripts/`` on PYTHONPATH.
"""

import os

_PATH = os.environ.get("PYTEST_PROGRESS_FILE")


def _write(line: str) -> None:
    if _PATH:
        with open(_PATH, "a") as f:
            f.write(line + "\n")


def pytest_runtest_logstart(nodeid, location):
    _write(f"start {nodeid}")


def pytest_runtest_logreport(report):
    # The call's outcome, or a setup skip/error, or a teardown error.
    if report.when == "call" or report.outcome != "passed":
        _write(f"{report.outcome} {report.nodeid}")
