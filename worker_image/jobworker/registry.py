"""JobRegistry collects job definitions, from code or from a module path (``--tasks myapp.jobs``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from jobworker import errors
from jobworker.jobs import JobDefinition


class JobRegistry:
    """The jobs a worker can run. Compose feature modules with ``include``."""

    def __init__(self, jobs: Iterable[JobDefinition[Any]] = (), *, include: Iterable[JobRegistry] = ()) -> None:
        self._jobs: dict[str, JobDefinition[Any]] = {}
        for job in jobs:
            self.add(job)
        for other in include:
            self.include(other)

    def add(self, job: JobDefinition[Any]) -> JobDefinition[Any]:
        existing = self._jobs.get(job.name)
        if existing is not None and existing is not job:
            raise errors.ConfigurationError(
                f"job {job.name!r} is defined twice ({_where(existing)} and {_where(job)}); rename one"
            )
        self._jobs[job.name] = job
        return job

    def include(self, other: JobRegistry) -> None:
        for job in other:
            self.add(job)

    def get(self, name: str) -> JobDefinition[Any]:
        try:
            return self._jobs[name]
        except KeyError:
            raise errors.UnknownTaskError(
                f"no job named {name!r}; known jobs: {', '.join(self.names) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[JobDefinition[Any]]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def names(self) -> list[str]:
        return sorted(self._jobs)


def _where(job: JobDefinition[Any]) -> str:
    return getattr(job.handler, "__module__", "?") + "." + getattr(job.handler, "__qualname__", "?")


def load_registry(spec: str) -> JobRegistry:
    """Load ``module`` or ``module:attribute``.

    The attribute (default ``registry``) may be a JobRegistry; without one, every JobDefinition
    at the module's top level is collected.
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.ConfigurationError(f"--tasks {spec!r}: cannot import {module_name!r}: {exc}") from exc
    target = getattr(module, attr or "registry", None)
    if attr and target is None:
        raise errors.ConfigurationError(f"--tasks {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if isinstance(target, JobRegistry):
        return target
    if isinstance(target, JobDefinition):
        return JobRegistry([target])
    found = [value for value in vars(module).values() if isinstance(value, JobDefinition)]
    if not found:
        raise errors.ConfigurationError(
            f"--tasks {spec!r}: found no JobRegistry named 'registry' and no define_job() definitions"
        )
    return JobRegistry(found)
