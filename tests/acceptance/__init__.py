"""Acceptance tests: the real CLI in subprocesses, kill -9, PostgreSQL restarts, npm graphile-worker interop."""

from __future__ import annotations
