"""Which job provider a service uses, from the environment: ``JOBS_PROVIDER`` and the ``QSTASH_*`` vars.

Every variable is checked at startup, and each missing or malformed one gets its own sentence, so a
misconfigured deployment fails on boot with the whole list rather than on the first enqueue.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from jobworker import errors

Provider = Literal["graphile", "qstash", "noop"]
PROVIDERS: tuple[Provider, ...] = ("graphile", "qstash", "noop")
DEFAULT_QSTASH_URL = "https://qstash.upstash.io"


@dataclass(frozen=True, kw_only=True)
class QStashConfig:
    """The QStash account (publishing side) and the signing keys plus public URL (receiving side)."""

    token: str = ""
    url: str = DEFAULT_QSTASH_URL
    current_signing_key: str = ""
    next_signing_key: str = ""
    callback_url: str = ""
    """The public base URL QStash calls; deliveries go to ``{callback_url}/v1/jobs/run/<name>``."""

    def destination(self, job_name: str) -> str:
        """The URL QStash calls for ``job_name``, which its signature's ``sub`` names exactly.

        The name is percent-encoded (a job name may hold spaces, ``/`` or any character graphile allows), and
        the endpoint decodes it. Only ``.`` and ``..`` cannot be sent: every URL parser resolves them as steps.
        """
        if job_name in (".", ".."):
            raise errors.ConfigurationError(
                f"job name {job_name!r} cannot be delivered by QStash: a URL path resolves it; rename the job"
            )
        return f"{self.callback_url}/v1/jobs/run/{urllib.parse.quote(job_name, safe='')}"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, publish: bool = True, receive: bool = True
    ) -> QStashConfig:
        """Read and check the ``QSTASH_*`` vars that the given roles need; raise one error listing all problems."""
        env = os.environ if env is None else env
        problems: list[str] = []

        def required(name: str, hint: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set ({hint})")
            elif any(c.isspace() for c in value):
                problems.append(f"{name} contains whitespace (paste the value without spaces or newlines)")
            return value

        def url(name: str, value: str, *, allow_path: bool) -> str:
            parsed = urllib.parse.urlsplit(value)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                problems.append(f"{name} {value!r} is not an http:// or https:// URL")
            elif parsed.query or parsed.fragment:
                problems.append(f"{name} {value!r} must not have a query string or fragment")
            elif not allow_path and parsed.path not in ("", "/"):
                problems.append(f"{name} {value!r} must be the server's base URL, without a path")
            return value.rstrip("/")

        token = base = current = nxt = callback = ""
        if publish:
            token = required("QSTASH_TOKEN", "the QStash token from the Upstash console")
            raw_url = env.get("QSTASH_URL", "").strip() or DEFAULT_QSTASH_URL
            base = url("QSTASH_URL", raw_url, allow_path=False)
        if receive:
            current = required("QSTASH_CURRENT_SIGNING_KEY", "the current signing key, to verify deliveries")
            nxt = required("QSTASH_NEXT_SIGNING_KEY", "the next signing key, used after a key rotation")
        raw_callback = required("QSTASH_CALLBACK_URL", "the public base URL QStash calls, e.g. https://api.example.com")
        if raw_callback:
            callback = url("QSTASH_CALLBACK_URL", raw_callback, allow_path=True)
        if problems:
            raise errors.ConfigurationError("QStash configuration: " + "; ".join(problems))
        return cls(
            token=token,
            url=base or DEFAULT_QSTASH_URL,
            current_signing_key=current,
            next_signing_key=nxt,
            callback_url=callback,
        )


@dataclass(frozen=True, kw_only=True)
class JobsConfig:
    """The provider and its settings. ``JOBS_PROVIDER`` unset means noop: enqueues raise 409."""

    provider: Provider = "noop"
    database_url: str | None = None
    worker_database_url: str | None = None
    """Where workers connect (LISTEN needs a session, which a transaction pooler cannot give); else database_url."""
    schema: str | None = None
    qstash: QStashConfig | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobsConfig:
        env = os.environ if env is None else env
        raw = env.get("JOBS_PROVIDER", "").strip().lower() or "noop"
        if raw not in PROVIDERS:
            raise errors.ConfigurationError(f"JOBS_PROVIDER {raw!r} is not one of {', '.join(PROVIDERS)}")
        provider: Provider = raw  # type: ignore[assignment]
        if provider == "qstash":
            return cls(provider=provider, qstash=QStashConfig.from_env(env))
        if provider == "graphile":
            url = env.get("DATABASE_URL") or None
            if url is None:
                raise errors.ConfigurationError("JOBS_PROVIDER=graphile needs DATABASE_URL (a postgresql:// URL)")
            return cls(
                provider=provider,
                database_url=url,
                worker_database_url=env.get("WORKER_DATABASE_URL") or None,
                schema=env.get("JOBWORKER_SCHEMA") or None,
            )
        return cls(provider=provider)
