from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_options_reference_is_generated_from_the_settings() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_options_doc.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
