from __future__ import annotations

import sys

from jobworker.cli import main

sys.exit(main())
