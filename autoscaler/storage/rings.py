"""Fixed-size sample rings for many series at once, updated and read with numpy.

Row ``r`` is one series (a node or a container). Each row keeps its last ``k`` samples:
timestamp (int64 microseconds), cumulative CPU (int64 nanoseconds) and working set (int64
bytes), plus one start time per series (a changed start time means a restart, which clears the
ring, so one value per series suffices) and the swap usage of the latest sample (-1: none
reported; every reader serves the latest sample's gauges, so swap needs no history). Integers
keep windows exact: a kubelet window of 15.953 s stays 15.953 s instead of picking up float noise.

Memory: ``3 × 8 × k`` bytes per series for the rings plus 24 bytes of per-series state.
"""

from __future__ import annotations

import numpy as np

_I64 = np.int64


class Rings:
    def __init__(self, k: int, capacity: int = 64) -> None:
        if k < 2:
            raise ValueError("a ring needs at least 2 samples to compute a rate")
        self.k = k
        self._next = 0
        self._free: list[int] = []
        self.any_swap = False  # no row has ever had swap: the no-swap path skips the swap column
        self._alloc_arrays(max(capacity, 1))

    def _alloc_arrays(self, capacity: int) -> None:
        self.ts = np.zeros((capacity, self.k), _I64)
        self.cpu = np.zeros((capacity, self.k), _I64)
        self.mem = np.zeros((capacity, self.k), _I64)
        self.start = np.zeros(capacity, _I64)
        self.swap = np.full(capacity, -1, _I64)
        self.head = np.zeros(capacity, np.int32)
        self.count = np.zeros(capacity, np.int32)

    @property
    def capacity(self) -> int:
        return len(self.start)

    @property
    def live(self) -> int:
        return self._next - len(self._free)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ts, self.cpu, self.mem, self.start, self.swap, self.head, self.count))

    def _grow(self, need: int) -> None:
        cap = self.capacity
        while cap < need:
            cap = cap * 3 // 2 + 16  # 1.5× growth: at most a third of the rows idle
        old = (self.ts, self.cpu, self.mem, self.start, self.swap, self.head, self.count)
        self._alloc_arrays(cap)
        for new, prev in zip((self.ts, self.cpu, self.mem, self.start, self.swap, self.head, self.count), old,
                             strict=True):
            new[: len(prev)] = prev

    def reserve(self, n: int) -> None:
        """Make room for ``n`` more rows in one step (a first scrape of many nodes would otherwise
        grow, and copy, the arrays a dozen times)."""
        need = self._next + max(0, n - len(self._free))
        if need > self.capacity:
            self._grow(need)

    def alloc(self, n: int) -> np.ndarray:
        """``n`` empty rows (reusing released ones first)."""
        take = min(n, len(self._free))
        rows = [self._free.pop() for _ in range(take)]
        extra = n - take
        if extra:
            if self._next + extra > self.capacity:
                self._grow(self._next + extra)
            rows.extend(range(self._next, self._next + extra))
            self._next += extra
        out = np.asarray(rows, dtype=np.intp)
        self.count[out] = 0
        self.head[out] = 0
        self.start[out] = 0
        self.swap[out] = -1
        return out

    def release(self, rows: np.ndarray | list[int]) -> None:
        rows = np.asarray(rows, dtype=np.intp)
        if len(rows):
            self.count[rows] = 0
            self._free.extend(rows.tolist())

    # -- writing ---------------------------------------------------------------------------------
    def ingest(self, rows: np.ndarray, ts: np.ndarray, cpu: np.ndarray, mem: np.ndarray, start: np.ndarray,
               fresh_lo: int | None = None, fresh_hi: int | None = None, swap: np.ndarray | None = None) -> None:
        """Append one sample to each of ``rows`` (which must be distinct).

        A sample whose start time is at or after the latest sample (restart), whose CPU counter or
        start time went down (reset), or whose timestamp went back clears its ring first. A sample
        with the latest timestamp replaces it (the kubelet had not refreshed its stats). With
        ``fresh_lo``/``fresh_hi`` (µs), a ring that is empty and whose container is that old gets a
        synthetic ``(start, cpu 0)`` sample first: metrics-server's fresh-container rule. ``swap``
        (bytes, -1 = not reported; None = none of them) becomes each row's latest swap.
        """
        if not len(rows):
            return
        k = self.k
        cnt = self.count[rows].astype(np.int64)
        head = self.head[rows].astype(np.int64)
        has = cnt > 0
        last = (head - 1) % k
        last_ts = self.ts[rows, last]
        last_cpu = self.cpu[rows, last]
        old_start = self.start[rows]
        known = start > 0
        restart = has & known & (start >= last_ts)
        reset = has & ((cpu < last_cpu) | (known & (old_start > 0) & (start < old_start)))
        back = has & (ts < last_ts)
        clear = restart | reset | back
        cnt[clear] = 0
        same = (cnt > 0) & (ts == last_ts)
        if fresh_lo is not None and fresh_hi is not None:
            age = ts - start
            fresh = (cnt == 0) & known & (age >= fresh_lo) & (age < fresh_hi)
            if fresh.any():
                fr, h = rows[fresh], head[fresh]
                self.ts[fr, h] = start[fresh]
                self.cpu[fr, h] = 0
                self.mem[fr, h] = mem[fresh]
                head[fresh] = (h + 1) % k
                cnt[fresh] = 1
        pos = np.where(same, last, head)
        self.ts[rows, pos] = ts
        self.cpu[rows, pos] = cpu
        self.mem[rows, pos] = mem
        self.head[rows] = np.where(same, head, (head + 1) % k)
        self.count[rows] = np.where(same, cnt, np.minimum(cnt + 1, k))
        self.start[rows] = np.where(known, start, np.where(clear, 0, old_start))
        if swap is not None:
            self.swap[rows] = swap
            self.any_swap = True
        elif self.any_swap:
            self.swap[rows] = -1

    # -- reading ---------------------------------------------------------------------------------
    def latest_pair(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(ok, timestamp_us, window_us, nanocores, memory)`` from the last two samples of each row."""
        return self._pair(rows, np.ones(len(rows), np.int64))

    def latest_swap(self, rows: np.ndarray) -> np.ndarray | None:
        """Swap bytes of each row's latest sample (-1: not reported); None when no row ever had any."""
        return self.swap[rows] if self.any_swap else None

    def window_pair(self, rows: np.ndarray, window_us: int, slack_us: int) -> tuple[np.ndarray, ...]:
        """Like :meth:`latest_pair` but from the oldest sample within ``window_us`` (+ ``slack_us``)
        of the latest one; never less than the latest pair."""
        rows = np.asarray(rows, dtype=np.intp)
        k = self.k
        cnt = self.count[rows].astype(np.int64)
        head = self.head[rows].astype(np.int64)
        ages = np.arange(k, dtype=np.int64)
        pos = (head[:, None] - 1 - ages[None, :]) % k
        tsm = self.ts[rows[:, None], pos]
        cutoff = tsm[:, 0] - (window_us + slack_us)
        valid = (ages[None, :] < cnt[:, None]) & (tsm >= cutoff[:, None])
        back = np.maximum(valid.sum(axis=1) - 1, 1)
        return self._pair(rows, back)

    def _pair(self, rows: np.ndarray, back: np.ndarray) -> tuple[np.ndarray, ...]:
        rows = np.asarray(rows, dtype=np.intp)
        k = self.k
        cnt = self.count[rows].astype(np.int64)
        head = self.head[rows].astype(np.int64)
        p1 = (head - 1) % k
        p0 = (head - 1 - back) % k
        t1 = self.ts[rows, p1]
        win = t1 - self.ts[rows, p0]
        dcpu = self.cpu[rows, p1] - self.cpu[rows, p0]
        ok = (cnt > back) & (win > 0) & (dcpu >= 0)
        safe = np.where(ok, win, 1).astype(np.float64) / 1e6
        nanocores = np.where(ok, np.trunc(dcpu.astype(np.float64) / safe), 0).astype(np.int64)
        return ok, t1, np.where(ok, win, 0), nanocores, self.mem[rows, p1]

    def history(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The row's samples oldest first: ``(timestamp_us, cpu_ns, memory)``."""
        n, h, k = int(self.count[row]), int(self.head[row]), self.k
        pos = (np.arange(h - n, h) % k) if n else np.empty(0, np.int64)
        return self.ts[row, pos].copy(), self.cpu[row, pos].copy(), self.mem[row, pos].copy()
