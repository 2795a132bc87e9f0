"""``python -m bench``: run every benchmark module in this package, in name order."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    worst = 0
    folder = Path(__file__).resolve().parent
    for module in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        loaded = importlib.import_module(f"bench.{module.name}")
        run = getattr(loaded, "main", None)
        if run is None:
            continue
        print(f"== bench.{module.name} ==", flush=True)
        # A module's main takes argv (like bench.core) or nothing.
        code = run([]) if inspect.signature(run).parameters else run()
        worst = max(worst, int(code or 0))
    return worst


if __name__ == "__main__":
    sys.exit(main())
