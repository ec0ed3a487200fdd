"""The third-party modules a project module needs: its own imports and its project imports'.

At any depth, and for the tests that check an environment built from a hand-made list of
packages (a logged model's requirements, the Bento's packages) against what the code really
imports. Imports inside functions count too: a module imported lazily still has to be
installed where the code path that needs it runs.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("features", "training", "serving")


def imported_modules(module: str) -> set[str]:
    """Top-level names imported, at any depth, by a project module and the project code it uses."""
    seen: set[Path] = set()
    found: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        candidates = [ROOT.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts) + 1)]
        candidates.append(ROOT.joinpath(*parts).with_suffix(".py"))
        for path in candidates:
            if not path.is_file() or path in seen:
                continue
            seen.add(path)
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                else:
                    continue
                for target in targets:
                    top = target.split(".")[0]
                    if top in PROJECT_PACKAGES:
                        pending.append(target)
                    else:
                        found.add(top)
    return found


def third_party(module: str) -> set[str]:
    """:func:`imported_modules` without the standard library."""
    return imported_modules(module) - set(sys.stdlib_module_names) - {"__future__"}
