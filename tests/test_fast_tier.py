"""scripts/fast_tier.py: which modules count as touched."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("fast_tier", ROOT / "scripts" / "fast_tier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_module_counts_as_touched_only_when_a_line_inside_a_function_ran(tmp_path):
    fast_tier = load_script()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "used.py").write_text('import os\n\n\ndef f():\n    """Doc."""\n    return os.sep\n')
    (package / "imported.py").write_text('import os\n\n\ndef g():\n    """Doc."""\n    return os.sep\n')
    (package / "never.py").write_text("X = 2\n")
    assert fast_tier.function_body_lines((package / "used.py").read_text()) == {6}
    executed = {(package / "__init__.py").resolve(): {1}, (package / "used.py").resolve(): {1, 4, 6},
                (package / "imported.py").resolve(): {1, 4, 5}}  # the def and its docstring line, not its body
    assert fast_tier.untouched_modules(executed, package) == ["pkg/imported.py", "pkg/never.py"]
