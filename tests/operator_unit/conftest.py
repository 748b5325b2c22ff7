from __future__ import annotations

import sys
from pathlib import Path

# helpers.py sits next to the tests; make it importable without turning tests/ into a package.
sys.path.insert(0, str(Path(__file__).parent))
