"""The contributors' fast tier: `pytest -m "not slow"` under coverage, then a check that it ran
code inside every module of the package.

    python scripts/fast_tier.py [PYTEST_ARGS...]

Exit 0 when the tests pass and every module under unlearnkit/ had at least one line inside a
function executed (a module with no functions: at least one line). Importing a module is not
enough: the fast tier is meant to catch a broken change anywhere in a few minutes. The time it
took is printed; the README quotes it with the machine it was measured on.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unlearnkit"


def function_body_lines(source: str) -> set[int]:
    """The line numbers of statements inside function bodies (a docstring alone does not count)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
            for statement in body:
                lines.update(n.lineno for n in ast.walk(statement) if isinstance(n, ast.stmt))
    return lines


def untouched_modules(executed: dict[Path, set[int]], package: Path = PACKAGE) -> list[str]:
    """Modules under `package` where no line inside a function ran (where there is no function,
    no line at all), as paths relative to the package's parent."""
    missing = []
    for path in sorted(package.rglob("*.py")):
        ran = executed.get(path.resolve(), set())
        wanted = function_body_lines(path.read_text())
        if not (ran & wanted if wanted else ran):
            missing.append(str(path.relative_to(package.parent)))
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after -m 'not slow'); put -- before options")
    args = parser.parse_args(argv)
    try:
        from coverage import Coverage
    except ImportError:
        print("fast_tier: coverage is not installed; run the README's set-up (bash scripts/setup.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        data_file = Path(scratch) / "coverage"
        # pytest-xdist's workers, and the CLI processes tests start, are Python processes of their own:
        # coverage follows them (patch = subprocess) and each writes its own data file, combined below
        settings = Path(scratch) / "coveragerc"
        settings.write_text(f"[run]\nsource = {PACKAGE}\ndata_file = {data_file}\nparallel = true\npatch = subprocess\n"
                            "disable_warnings = no-data-collected\n")  # the controller process runs no package code
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "coverage", "run", f"--rcfile={settings}", "-m", "pytest", "-q", "-m", "not slow",
                               *args.pytest_args], cwd=ROOT)
        seconds = time.monotonic() - started
        coverage = Coverage(data_file=str(data_file), config_file=str(settings))
        coverage.combine(data_paths=[scratch], keep=False)
        coverage.load()
        data = coverage.get_data()
        executed = {Path(name).resolve(): set(data.lines(name) or ()) for name in data.measured_files()}
    missing = untouched_modules(executed)
    print(f"fast tier: pytest exit {done.returncode} in {seconds:.0f} s; {len(missing)} module(s) with no line run inside a function")
    for name in missing:
        print(f"  untouched: {name}")
    if done.returncode != 0:
        return done.returncode
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
