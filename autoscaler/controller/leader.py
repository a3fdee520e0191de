"""Lease-based leader election with client-go's leaderelection semantics.

One ``coordination.k8s.io/v1`` Lease; ``holderIdentity`` is ``<hostname>_<uuid>``. A candidate
retries every ``retry_period`` (with client-go's 1.2 jitter factor). A lease held by someone else
counts as expired only when ``lease_duration`` has passed on *our* clock since we last saw its
record change (clocks of different machines are never compared). Taking over from another holder
sets ``acquireTime`` and increments ``leaseTransitions``. The leader renews every retry period and
steps down when it could not renew for ``renew_deadline``; since renew_deadline < lease_duration,
it has stopped acting before anyone else may take over, so two replicas never both act.
On a clean stop the lease is released (holder emptied, duration 1 s), as with ReleaseOnCancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from autoscaler.k8s.rest import KubeClient, KubeError, seg
from autoscaler.k8s.timefmt import format_micro_time

log = structlog.get_logger(__name__)

JITTER_FACTOR = 1.2


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str | None = None, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if renew_deadline >= lease_duration:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self._observed: dict[str, Any] | None = None
        self._observed_at = -float("inf")
        self._renewed_at = -float("inf")
        self._leading = False
        self.transitions_seen = 0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{seg(self.namespace)}/leases/{seg(self.name)}"

    @property
    def leading(self) -> bool:
        """True only while the last successful renewal is younger than the renew deadline."""
        return self._leading and self.monotonic() - self._renewed_at < self.renew_deadline

    def _spec(self, acquire: str, transitions: int) -> dict[str, Any]:
        now = format_micro_time(self.clock())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": acquire or now, "renewTime": now, "leaseTransitions": transitions}

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew)."""
        try:
            lease = await self.client.get(self.path)
        except KubeError as exc:
            if not exc.not_found:
                log.warning("error retrieving resource lock", lock=f"{self.namespace}/{self.name}", error=exc.message)
                return False
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec("", 0)}
            try:
                created = await self.client.post(
                    f"/apis/coordination.k8s.io/v1/namespaces/{seg(self.namespace)}/leases", body)
            except KubeError as exc2:
                log.info("error initially creating leader election record", error=exc2.message)
                return False
            self._observe(created.get("spec") or {})
            return True
        spec = dict(lease.get("spec") or {})
        record = {k: spec.get(k) for k in ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
                                           "leaseTransitions")}
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()
        holder = record.get("holderIdentity") or ""
        duration = float(record.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > self.monotonic():
            return False
        transitions = int(record.get("leaseTransitions") or 0)
        if holder == self.identity:
            new_spec = self._spec(str(record.get("acquireTime") or ""), transitions)
        else:
            new_spec = self._spec("", transitions + 1)  # client-go counts every change of holder
        body = {**lease, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {**spec, **new_spec}}
        try:
            updated = await self.client.put(self.path, body)
        except KubeError as exc:
            log.info("failed to update lock", lock=f"{self.namespace}/{self.name}", error=exc.message)
            return False
        self._observe(updated.get("spec") or {})
        if holder != self.identity:
            self.transitions_seen += 1
        return True

    def _observe(self, spec: dict[str, Any]) -> None:
        self._observed = {k: spec.get(k) for k in ("holderIdentity", "leaseDurationSeconds", "acquireTime",
                                                   "renewTime", "leaseTransitions")}
        self._observed_at = self.monotonic()
        self._renewed_at = self._observed_at

    def holder(self) -> str:
        return str((self._observed or {}).get("holderIdentity") or "")

    async def _jittered(self, period: float) -> None:
        await self.sleep(period * (1 + random.random() * (JITTER_FACTOR - 1)))

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Retry until we hold the lease (True) or ``stop`` is set (False)."""
        log.info("attempting to acquire leader lease", lock=f"{self.namespace}/{self.name}", identity=self.identity)
        while not stop.is_set():
            if await self.try_acquire_or_renew():
                self._leading = True
                log.info("successfully acquired lease", lock=f"{self.namespace}/{self.name}", identity=self.identity)
                return True
            await _wait(stop, self._jittered(self.retry_period))
        return False

    async def renew(self, stop: asyncio.Event) -> None:
        """Renew every retry period; return when renewal failed for the renew deadline or on stop."""
        while not stop.is_set():
            await _wait(stop, self.sleep(self.retry_period))
            if stop.is_set():
                break
            deadline = self.monotonic() + self.renew_deadline
            while not stop.is_set():
                ok = False
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
                # the renewal's completion, and a cancelled elector would then renew forever
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(max(0.01, deadline - self.monotonic())):
                        ok = await self.try_acquire_or_renew()
                if ok:
                    break
                if self.monotonic() >= deadline:
                    self._leading = False
                    log.warning("failed to renew lease: stopping leading", lock=f"{self.namespace}/{self.name}",
                                identity=self.identity)
                    return
                await _wait(stop, self.sleep(self.retry_period))

    async def release(self) -> None:
        """Give the lease up (ReleaseOnCancel) if we still hold it."""
        self._leading = False
        try:
            lease = await self.client.get(self.path)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            now = format_micro_time(self.clock())
            spec.update({"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now})
            await self.client.put(self.path, {**lease, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                              "spec": spec})
            log.info("released leader lease", lock=f"{self.namespace}/{self.name}", identity=self.identity)
        except KubeError as exc:
            log.warning("failed to release lease", error=exc.message)

    async def run(self, stop: asyncio.Event, lead: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Acquire, then run ``lead(lost)`` while renewing; on loss, ``lost`` is set and we campaign again."""
        while not stop.is_set():
            if not await self.acquire(stop):
                break
            lost = asyncio.Event()
            leader_task = asyncio.create_task(lead(lost), name="leading")
            try:
                await self.renew(stop)
            finally:
                lost.set()
                self._leading = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(leader_task, 30)
                if not leader_task.done():
                    leader_task.cancel()
            if stop.is_set():
                await self.release()


async def _wait(stop: asyncio.Event, aw: Awaitable[None]) -> None:
    """Await ``aw`` unless ``stop`` is set first."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
