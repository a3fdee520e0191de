"""Read-your-own-writes for the HPA controller (StaleControllerConsistencyHPA, Kubernetes 1.37).

After the controller writes an HPA's status it remembers the resourceVersion the API server
returned. A later sync of that HPA runs only once the HPA informer has observed that version (its
last-synced resourceVersion is at least as new); until then the sync is skipped and requeued, so a
decision is never made from a status older than our own last write. Like upstream's
``pkg/controller/util/consistency``: a version that does not parse as an integer never blocks, and
a record is dropped once the informer has caught up or the HPA is deleted.
"""

from __future__ import annotations

from collections.abc import Callable


class StaleRead(Exception):
    """The informer has not yet observed our write of ``key`` (upstream's ConsistencyError text)."""

    def __init__(self, key: str, read_rv: str, wrote_rv: str) -> None:
        super().__init__(f"read version: {read_rv} is not as new as written version: {wrote_rv} "
                         "for group resource horizontalpodautoscalers.autoscaling")
        self.key, self.read_rv, self.wrote_rv = key, read_rv, wrote_rv


def _compare(a: str, b: str) -> int | None:
    """resourceversion.CompareResourceVersion: None when either is not an unsigned integer."""
    if not (a.isdigit() and b.isdigit()):
        return None
    return (int(a) > int(b)) - (int(a) < int(b))


class ConsistencyStore:
    """The resourceVersions this controller wrote, per HPA key, checked against the informer."""

    def __init__(self, last_synced_rv: Callable[[], str | None]) -> None:
        self.last_synced_rv = last_synced_rv
        self._writes: dict[str, tuple[str, str]] = {}  # key -> (uid, resourceVersion written)

    def wrote_at(self, key: str, uid: str, rv: str) -> None:
        """Remember a write; for the same object only a newer version replaces the one held."""
        held = self._writes.get(key)
        if held is not None and held[0] == uid and (cmp := _compare(held[1], rv)) is not None and cmp >= 0:
            return
        self._writes[key] = (uid, rv)

    def clear(self, key: str, uid: str = "") -> None:
        """Forget ``key`` (only the record of object ``uid`` when given)."""
        held = self._writes.get(key)
        if held is not None and (not uid or held[0] == uid):
            del self._writes[key]

    def ensure_ready(self, key: str) -> None:
        """Raise :class:`StaleRead` while the informer is behind our last write of ``key``."""
        held = self._writes.get(key)
        if held is None:
            return
        read = self.last_synced_rv() or ""
        if read:  # no version yet (relisting): do not block, as upstream
            cmp = _compare(held[1], read)
            if cmp is not None and cmp > 0:
                raise StaleRead(key, read, held[1])
        self.clear(key, held[0])

    def __len__(self) -> int:
        return len(self._writes)
