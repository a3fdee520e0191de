"""Our HPA controller (dry-run) beside kube-controller-manager's, sync by sync, on the same HPAs.

Both controllers read the same metrics: kcm through the aggregator from `autoscaler run`'s
metrics.k8s.io, ours from the same process's window store, and both the same external metrics
API. Each sync is taken from the controller's own record:

* kube-controller-manager with ``--vmodule=horizontal=4`` logs every sync's decision
  ("Proposing desired replicas" with the timestamp of the metric it used, then "Decided not to
  scale" or "Successfully rescaled"), or the error that ended it ("failed to compute desired number
  of replicas ..."). The real ``status.desiredReplicas`` is read from a watch of the HPAs (the
  status kcm wrote after that sync, or the one in force when nothing changed).
* our dry-run controller logs one ``dry-run sync`` record per sync at debug level (HPA, current
  and desired replicas, error, the newest resource-metrics timestamp it read, currentMetrics).

The two sample at different instants. Each real sync is paired with our decision made from the
same metric scrape (equal metric timestamps; the nearest in time when several), else with our
nearest decision within one sync period. A disagreement gets a named cause from what differs
between the two inputs (replica count read, scrape, currentMetrics, one side failing); it is
*sampling skew* only when that input difference is shown AND one of our decisions within one sync
period of the real sync agrees with it. A disagreement on identical inputs is reported as such.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.k8s.timefmt import duration_flag, parse_time

HELP = __doc__ or ""

_KLOG = re.compile(r"^([IWEF])(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6})\s+\d+ (\S+)\] \"((?:[^\"\\]|\\.)*)\"(.*)$")
_KV = re.compile(r"(\w+)=(\"(?:[^\"\\]|\\.)*\"|\S+)")
_FAILED = re.compile(r"failed to compute desired number of replicas based on listed metrics for (\S+): (.*)")
_GO_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.\d+)? \+0000 UTC")

#: causes of a disagreement; the first three are sampling skew when our next or previous sync agrees
CAUSES = {
    "replicas-read": "the two syncs read a different spec.replicas (one ran before, the other after a rescale)",
    "scrape": "the two syncs read different metric samples (no decision of ours read the scrape kcm read, or "
              "an external value read at another instant)",
    "pod-view": "same scrape, different currentMetrics: the controllers' pod lists differed (a pod added, "
                "deleted or turned Ready between the two reads)",
    "metrics-one-side": "metrics were available to one controller only (one sync failed to compute metrics)",
    "sync-phase": "same inputs, but the syncs ran at different instants, so a stabilization window or a scaling "
                  "policy's period held different past recommendations or scale events; kcm's adjacent sync "
                  "decided as ours did",
    "unmatched": "no decision of ours within one sync period of the real sync",
    "same-inputs": "same replica count, scrape and currentMetrics, different desired replicas (not explained by "
                   "sampling)",
}
SKEW_CAUSES = ("replicas-read", "scrape", "pod-view", "metrics-one-side", "sync-phase")


@dataclass
class Sync:
    """One controller's sync of one HPA."""

    hpa: str
    time: float
    desired: int | None  # None: the sync failed before deciding
    current: int | None = None
    metrics_time: float | None = None
    error: str | None = None
    current_metrics: Any = None


@dataclass
class StatusRecord:
    """An HPA's status as the watch saw it."""

    hpa: str
    time: float
    desired: int | None
    current: int | None
    current_metrics: Any
    target: str  # Kind/namespace/name, as kcm names the scale target


@dataclass
class Pair:
    hpa: str
    time: float
    real: int | None
    ours: int | None
    real_current: int | None
    ours_current: int | None
    real_metrics_time: float | None
    ours_metrics_time: float | None
    match: str  # "same input" (same scrape, failure or external value), "nearest", "none"
    agree: bool
    cause: str | None = None
    sampling_skew: bool = False
    evidence: str = ""


@dataclass
class Report:
    pairs: list[Pair] = field(default_factory=list)
    status_mismatches: int = 0

    @property
    def compared(self) -> int:
        return len(self.pairs)

    @property
    def agreeing(self) -> int:
        return sum(p.agree for p in self.pairs)

    def causes(self) -> Counter[str]:
        return Counter(p.cause for p in self.pairs if not p.agree and p.cause)

    def to_json(self) -> dict[str, Any]:
        per_hpa: dict[str, dict[str, int]] = {}
        for p in self.pairs:
            d = per_hpa.setdefault(p.hpa, {"compared": 0, "agreeing": 0})
            d["compared"] += 1
            d["agreeing"] += p.agree
        skew = sum(1 for p in self.pairs if not p.agree and p.sampling_skew)
        return {"compared": self.compared, "agreeing": self.agreeing,
                "agreement": self.agreeing / self.compared if self.compared else None,
                "disagreements": self.compared - self.agreeing, "samplingSkew": skew,
                "byCause": {c: {"count": n, "meaning": CAUSES[c]} for c, n in sorted(self.causes().items())},
                "statusMismatches": self.status_mismatches, "perHPA": per_hpa,
                "disagreementList": [asdict(p) for p in self.pairs if not p.agree]}

    def to_markdown(self) -> str:
        j = self.to_json()
        pct = f"{100 * j['agreement']:.1f} %" if j["agreement"] is not None else "n/a"
        lines = ["# Our HPA controller (dry-run) beside kube-controller-manager's", "",
                 f"HPA-syncs compared: **{j['compared']}**, agreeing: **{j['agreeing']}** ({pct}); "
                 f"disagreements: {j['disagreements']} (sampling skew shown: {j['samplingSkew']}).", ""]
        if j["statusMismatches"]:
            lines += [f"Real syncs whose logged decision differs from the watched status.desiredReplicas: "
                      f"{j['statusMismatches']}.", ""]
        lines += ["| HPA | syncs | agreeing |", "|---|---:|---:|"]
        lines += [f"| {h} | {d['compared']} | {d['agreeing']} |" for h, d in sorted(j["perHPA"].items())]
        if j["byCause"]:
            lines += ["", "| cause | count | sampling skew | meaning |", "|---|---:|---|---|"]
            for c, d in j["byCause"].items():
                lines.append(f"| {c} | {d['count']} | {'yes' if c in SKEW_CAUSES else 'no'}* | {d['meaning']} |")
            lines += ["", "\\* a disagreement of a skew cause counts as sampling skew only when one of our syncs "
                          "within one sync period agrees with the real one.", "",
                      "| time | HPA | real | ours | cause | skew | evidence |", "|---|---|---:|---:|---|---|---|"]
            for p in self.pairs:
                if not p.agree:
                    lines.append(f"| {_iso(p.time)} | {p.hpa} | {p.real} | {p.ours} | {p.cause} | "
                                 f"{'yes' if p.sampling_skew else 'no'} | {p.evidence} |")
        return "\n".join(lines) + "\n"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def _unquote(v: str) -> str:
    return json.loads(v) if v.startswith('"') else v


def _go_time(text: str) -> float | None:
    m = _GO_TIME.search(text)
    return parse_time(f"{m.group(1)}T{m.group(2)}Z") if m else None


# --- reading the records -----------------------------------------------------------------------

def parse_kcm_log(lines: list[str], hpa_of_target: dict[str, str], year: int) -> list[Sync]:
    """kube-controller-manager's HPA syncs from its klog text (``--vmodule=horizontal=4``).

    ``hpa_of_target`` maps ``Kind/namespace/name`` to the HPA ``namespace/name``; klog's header has
    no year, so ``year`` supplies it.
    """
    out: list[Sync] = []
    proposed: dict[str, float | None] = {}
    for line in lines:
        m = _KLOG.match(line)
        if not m or not m.group(8).startswith("horizontal.go"):
            continue
        mon, day, hh, mm, ss, us = (int(m.group(i)) for i in range(2, 8))
        t = dt.datetime(year, mon, day, hh, mm, ss, us, dt.UTC).timestamp()
        msg = m.group(9)
        kv = {k: _unquote(v) for k, v in _KV.findall(m.group(10))}
        if msg.startswith("Proposing desired replicas"):
            proposed[kv.get("scaleTarget", "")] = _go_time(kv.get("timestamp", ""))
        elif msg == "Decided not to scale":
            target = kv.get("scaleTarget", "")
            hpa = hpa_of_target.get(target)
            if hpa is not None:
                desired = int(kv["desiredReplicas"])
                out.append(Sync(hpa, t, desired, desired, proposed.pop(target, None)))
        elif msg == "Successfully rescaled":
            hpa = kv.get("HPA", "")
            target = next((k for k, v in hpa_of_target.items() if v == hpa), "")
            out.append(Sync(hpa, t, int(kv["desiredReplicas"]), int(kv["currentReplicas"]),
                            proposed.pop(target, None)))
        elif msg == "Unhandled Error":
            f = _FAILED.match(kv.get("err", ""))
            if f and f.group(1) in hpa_of_target:
                proposed.pop(f.group(1), None)
                out.append(Sync(hpa_of_target[f.group(1)], t, None, error=f.group(2)))
    return out


def parse_ours_log(lines: list[str]) -> list[Sync]:
    """Our dry-run controller's ``dry-run sync`` records (JSON log lines)."""
    out = []
    for line in lines:
        if '"dry-run sync"' not in line:
            continue
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("event") != "dry-run sync":
            continue
        out.append(Sync(r["hpa"], parse_time(r["timestamp"]), None if r.get("error") else r.get("desired"),
                        r.get("current"), r.get("metrics_time"), r.get("error"), r.get("current_metrics")))
    return out


def status_record(obj: dict[str, Any], now: float) -> StatusRecord:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    ns = meta.get("namespace") or "default"
    return StatusRecord(f"{ns}/{meta.get('name')}", now, status.get("desiredReplicas"),
                        status.get("currentReplicas"), status.get("currentMetrics"),
                        f"{ref.get('kind')}/{ns}/{ref.get('name')}")


# --- the comparison ----------------------------------------------------------------------------

def _status_at(history: list[StatusRecord], t: float) -> StatusRecord | None:
    """The status in force just after a sync at ``t`` (kcm writes it right after logging)."""
    before = [s for s in history if s.time <= t + 1.0]
    return before[-1] if before else None


def _metric_key(m: Any) -> str:
    return json.dumps(m, sort_keys=True) if m is not None else ""


def _failure(error: str | None) -> str | None:
    """The metric failure without the HPA-specific prefix (both controllers word it alike)."""
    if error is None:
        return None
    f = _FAILED.match(error)
    return f.group(2) if f else error


def compare(real: list[Sync], ours: list[Sync], statuses: list[StatusRecord], sync_period: float) -> Report:
    """Pair every real sync with ours (see the module docstring) and classify disagreements."""
    rep = Report()
    by_hpa: dict[str, list[Sync]] = {}
    for o in sorted(ours, key=lambda s: s.time):
        by_hpa.setdefault(o.hpa, []).append(o)
    real_by_hpa: dict[str, list[Sync]] = {}
    for r in sorted(real, key=lambda s: s.time):
        real_by_hpa.setdefault(r.hpa, []).append(r)
    hist: dict[str, list[StatusRecord]] = {}
    for s in sorted(statuses, key=lambda s: s.time):
        hist.setdefault(s.hpa, []).append(s)
    for hpa, reals in real_by_hpa.items():
        mine = by_hpa.get(hpa) or []
        desired_of: dict[int, int | None] = {}
        for i, r in enumerate(reals):
            st = _status_at(hist.get(hpa, []), r.time)
            if st is not None and st.desired is None:
                st = None  # no status written yet
            if st is not None and r.desired is not None and st.desired != r.desired:
                rep.status_mismatches += 1
            # status.desiredReplicas: also what a failed sync left in place
            desired_of[i] = st.desired if st is not None else r.desired
        for i, r in enumerate(reals):
            # only where both controllers were running
            if not mine or r.time < mine[0].time - sync_period or r.time > mine[-1].time + sync_period:
                continue
            st = _status_at(hist.get(hpa, []), r.time)
            real_desired = desired_of[i]
            real_metrics = _metric_key(st.current_metrics) if st is not None and st.desired is not None else None
            near = [o for o in mine if abs(o.time - r.time) <= sync_period]
            if not near:
                rep.pairs.append(Pair(hpa, r.time, real_desired, None, r.current, None, r.metrics_time, None, "none",
                                      False, "unmatched", False, "no sync of ours within one period"))
                continue
            same = [o for o in near if _same_input(r, o, real_metrics)]
            o, how = (min(same, key=lambda o: abs(o.time - r.time)), "same input") if same else \
                (min(near, key=lambda o: abs(o.time - r.time)), "nearest")
            ours_desired = o.desired if o.desired is not None else real_desired
            agree = (r.error is None) == (o.error is None) and ours_desired == real_desired
            p = Pair(hpa, r.time, real_desired, ours_desired, r.current, o.current, r.metrics_time, o.metrics_time,
                     how, agree)
            if not agree:
                p.cause, p.evidence = _cause(r, o, how, real_metrics)
                # the disagreement vanishes within one sync: one of our other syncs agrees with kcm's
                ours_agrees = any((x.desired if x.desired is not None else real_desired) == real_desired
                                  and (x.error is None) == (r.error is None) for x in near if x is not o)
                if p.cause == "same-inputs":
                    # and kcm's adjacent sync agrees with ours: the two ran at different instants
                    adjacent = [desired_of[j] for j in (i - 1, i + 1) if 0 <= j < len(reals)
                                and abs(reals[j].time - r.time) <= sync_period * 1.5]
                    if ours_agrees and ours_desired in adjacent:
                        p.cause = "sync-phase"
                        p.evidence += f"; kcm's adjacent sync decided {ours_desired}, ours {o.time - r.time:+.1f} s away"
                p.sampling_skew = p.cause in SKEW_CAUSES and ours_agrees
            rep.pairs.append(p)
    rep.pairs.sort(key=lambda p: p.time)
    return rep


def _same_input(r: Sync, o: Sync, real_metrics: str | None) -> bool:
    """Did ``o`` decide from what ``r`` read: the same scrape, the same failure, or (external
    metrics: no scrape timestamp) the same currentMetrics."""
    if r.error is not None or o.error is not None:
        return _failure(r.error) == _failure(o.error)
    if r.metrics_time is not None and o.metrics_time is not None:
        return int(o.metrics_time) == int(r.metrics_time)
    return r.metrics_time is None and real_metrics is not None and real_metrics == _metric_key(o.current_metrics)


def _cause(r: Sync, o: Sync, how: str, real_metrics: str | None) -> tuple[str, str]:
    if (r.error is None) != (o.error is None):
        failed = "kcm" if r.error is not None else "ours"
        return "metrics-one-side", f"{failed} failed: {(_failure(r.error or o.error) or '')[:160]}"
    if r.current is not None and o.current is not None and r.current != o.current:
        return "replicas-read", f"spec.replicas read: kcm {r.current}, ours {o.current}"
    ours_metrics = _metric_key(o.current_metrics)
    if how != "same input":
        return "scrape", (f"metric timestamps: kcm {_ts(r.metrics_time)}, ours {_ts(o.metrics_time)}; currentMetrics: "
                          f"kcm {(real_metrics or '?')[:120]}, ours {ours_metrics[:120]}")
    if real_metrics is not None and real_metrics != ours_metrics:
        return "pod-view", f"currentMetrics: kcm {real_metrics[:120]}, ours {ours_metrics[:120]}"
    return "same-inputs", f"currentReplicas {r.current}, scrape {_ts(r.metrics_time)}"


def _ts(t: float | None) -> str:
    return _iso(t)[:8] if t is not None else "-"


# --- CLI: `autoscaler sim agree` ---------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kcm-log", required=True, metavar="FILE",
                   help="kube-controller-manager's log, run with --vmodule=horizontal=4 (sim up: STATE_DIR/logs/)")
    p.add_argument("--ours-log", required=True, metavar="FILE",
                   help="`autoscaler run --log-level debug --log-format json` log (sim up: STATE_DIR/autoscaler/)")
    p.add_argument("--statuses", metavar="FILE.jsonl",
                   help="HPA statuses recorded by --watch (read; or written when --watch is given)")
    p.add_argument("--kubeconfig", help="with --watch: the cluster's kubeconfig")
    p.add_argument("--watch", type=duration_flag, metavar="DURATION",
                   help="watch the HPAs' status this long first (needs --kubeconfig)")
    p.add_argument("--sync-period", type=duration_flag, default=15.0, metavar="DURATION",
                   help="the HPA sync period both controllers run with (default 15s)")
    p.add_argument("-o", "--output", choices=("markdown", "json"), default="markdown")


def read_statuses(path: Path) -> list[StatusRecord]:
    return [StatusRecord(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


async def watch_statuses(kubeconfig: str, duration: float, out: Path, stop: Any = None) -> None:
    """Append every HPA status the API server shows, as JSON lines, for ``duration`` seconds."""
    import asyncio
    import time

    from autoscaler.k8s.informer import Informer
    from autoscaler.k8s.kubeconfig import load_kubeconfig

    stop = stop or asyncio.Event()
    inf = Informer(load_kubeconfig(kubeconfig), "/apis/autoscaling/v2/horizontalpodautoscalers", name="agree-hpas")
    with out.open("a") as fh:
        def on(kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            if kind != "DELETED":
                fh.write(json.dumps(asdict(status_record(obj, time.time()))) + "\n")
                fh.flush()

        inf.add_handler(on)
        task = asyncio.create_task(inf.run(stop))
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
        finally:
            stop.set()
            await task


def analyse(kcm_log: Path, ours_log: Path, statuses: list[StatusRecord], sync_period: float) -> Report:
    targets = {s.target: s.hpa for s in statuses}
    year = dt.datetime.fromtimestamp(kcm_log.stat().st_mtime, dt.UTC).year
    real = parse_kcm_log(kcm_log.read_text(errors="replace").splitlines(), targets, year)
    ours = parse_ours_log(ours_log.read_text(errors="replace").splitlines())
    return compare(real, ours, statuses, sync_period)


def main(args: argparse.Namespace) -> int:
    import asyncio

    if args.watch is not None:
        if not args.kubeconfig or not args.statuses:
            print("error: --watch needs --kubeconfig and --statuses FILE", file=sys.stderr)
            return 1
        asyncio.run(watch_statuses(args.kubeconfig, args.watch, Path(args.statuses)))
    if not args.statuses:
        print("error: --statuses FILE (recorded with --watch) is required", file=sys.stderr)
        return 1
    try:
        rep = analyse(Path(args.kcm_log), Path(args.ours_log), read_statuses(Path(args.statuses)), args.sync_period)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rep.to_json(), indent=2) if args.output == "json" else rep.to_markdown(), end="")
    return 0
