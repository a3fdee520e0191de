"""``/healthz``, ``/livez``, ``/readyz`` with k8s.io/apiserver's output and metrics-server's checks.

Each endpoint runs its named checks in order. Success: ``200 ok``; ``?verbose`` lists
``[+]name ok`` lines and ``<endpoint> check passed``; a failure answers 500 with
``[-]name failed: reason withheld`` (the reason is logged, not shown). ``?exclude=name`` skips a
check; ``/<endpoint>/<name>`` runs one check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

# A check returns None when healthy, otherwise a reason.
Check = Callable[[], str | None]


def ok() -> str | None:
    return None


@dataclass
class HealthEndpoint:
    name: str  # healthz | livez | readyz
    checks: list[tuple[str, Check]]

    def run(self, verbose: bool, exclude: set[str]) -> tuple[int, str]:
        lines: list[str] = []
        failed = False
        for name, check in self.checks:
            if name in exclude:
                lines.append(f"[+]{name} excluded: ok")
                continue
            reason = _safe(check)
            if reason is None:
                lines.append(f"[+]{name} ok")
            else:
                failed = True
                lines.append(f"[-]{name} failed: reason withheld")
                log.info("Failed probe", probe=name, endpoint=self.name, err=reason)
        if failed:
            lines.append(f"{self.name} check failed")
            return 500, "\n".join(lines) + "\n"
        if verbose:
            lines.append(f"{self.name} check passed")
            return 200, "\n".join(lines) + "\n"
        return 200, "ok"

    def run_one(self, check_name: str) -> tuple[int, str] | None:
        for name, check in self.checks:
            if name == check_name:
                reason = _safe(check)
                if reason is None:
                    return 200, "ok"
                log.info("Failed probe", probe=name, endpoint=self.name, err=reason)
                return 500, f"internal server error: {reason}\n"
        return None


def _safe(check: Check) -> str | None:
    try:
        return check()
    except Exception as exc:  # a broken check is a failed check, not a broken endpoint
        return f"check raised {type(exc).__name__}: {exc}"


@dataclass
class HealthChecks:
    """The three endpoints wired to metrics-server's check names (in its order)."""

    storage_ready: Check
    informers_synced: Check
    metadata_informer_synced: Check
    collection_timely: Check
    shutting_down: Callable[[], bool] = lambda: False

    def endpoints(self) -> dict[str, HealthEndpoint]:
        generic: list[tuple[str, Check]] = [
            ("ping", ok),
            ("log", ok),
            ("poststarthook/max-in-flight-filter", ok),
            ("poststarthook/storage-object-count-tracker-hook", ok),
        ]

        def shutdown() -> str | None:
            return "process is shutting down" if self.shutting_down() else None

        return {
            "healthz": HealthEndpoint("healthz", [*generic, ("metadata-informer-sync", self.metadata_informer_synced)]),
            "livez": HealthEndpoint("livez", [*generic, ("metric-collection-timely", self.collection_timely),
                                              ("metadata-informer-sync", self.metadata_informer_synced)]),
            "readyz": HealthEndpoint("readyz", [*generic, ("metric-storage-ready", self.storage_ready),
                                                ("metric-informer-sync", self.informers_synced),
                                                ("metadata-informer-sync", self.metadata_informer_synced),
                                                ("shutdown", shutdown)]),
        }
