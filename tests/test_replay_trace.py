"""Trace files: native round trips, CSV import/export, and CSV errors with line numbers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from sim.replay.csvtrace import CsvTraceError, read_csv
from sim.replay.synth import hpa_manifest, synthesize
from sim.replay.trace import TraceError, read_trace, write_trace

START = 1_767_225_600.0
HEADER = "timestamp,namespace,workload,pod,container,cpu_cores,memory_bytes\n"


@pytest.fixture(scope="module")
def trace():
    t = np.arange(0, 3600 + 1, 15.0)
    demand = np.where(t >= 1200, 2.5, 0.8)
    return synthesize("web", START, 15.0, demand, hpa_manifest("web", target=60, max_replicas=8), seed=7)


def _same(a, b, *, lifecycle: bool = True) -> None:
    assert a.start == pytest.approx(b.start) and a.end == pytest.approx(b.end)
    assert a.resolution == pytest.approx(b.resolution)
    assert [w.key for w in a.workloads] == [w.key for w in b.workloads]
    for wa, wb in zip(a.workloads, b.workloads, strict=True):
        assert [p.name for p in wa.pods] == [p.name for p in wb.pods]
        for pa, pb in zip(wa.pods, wb.pods, strict=True):
            if lifecycle:
                for f in ("created", "started", "ready", "deleted"):
                    va, vb = getattr(pa, f), getattr(pb, f)
                    assert (va is None) == (vb is None) and (va is None or va == pytest.approx(vb, abs=1e-3)), f
            for ca, cb in zip(pa.containers, pb.containers, strict=True):
                assert ca.name == cb.name
                np.testing.assert_allclose(ca.t, cb.t, atol=1e-3)
                np.testing.assert_allclose(ca.cpu, cb.cpu, atol=1e-6)
                np.testing.assert_allclose(ca.memory, cb.memory, atol=0.5)
                assert (ca.cpu_request, ca.cpu_limit, ca.memory_request, ca.memory_limit) == \
                       (cb.cpu_request, cb.cpu_limit, cb.memory_request, cb.memory_limit)


@pytest.mark.parametrize("name", ["t.json", "t.json.gz"])
def test_native_round_trip_keeps_everything(tmp_path: Path, trace, name: str) -> None:
    write_trace(trace, tmp_path / name)
    back, skipped = read_trace(tmp_path / name)
    assert skipped == 0
    _same(trace, back)
    w, wb = trace.workloads[0], back.workloads[0]
    assert wb.kind == "Deployment"
    np.testing.assert_allclose(w.replicas_t, wb.replicas_t)
    assert w.replicas.tolist() == wb.replicas.tolist()
    assert wb.hpas[0].manifest == w.hpas[0].manifest
    if name.endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"


def test_native_document_is_versioned_and_refuses_unknown_versions(tmp_path: Path, trace) -> None:
    write_trace(trace, tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["format"] == "autoscaler-trace" and doc["version"] == 1
    assert doc["start"].startswith("2026-01-01T00:00:00")
    doc["version"] = 99
    (tmp_path / "v99.json").write_text(json.dumps(doc))
    with pytest.raises(TraceError, match="unsupported trace version 99"):
        read_trace(tmp_path / "v99.json")
    doc["version"] = 1
    doc["workloads"][0]["pods"][0]["containers"][0]["cpu"] = [1.0]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(TraceError, match=r"workloads\[0\]\.pods\[0\]\.containers\[0\]: t, cpu and memory have different"):
        read_trace(tmp_path / "bad.json")


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_csv_export_import_round_trip(tmp_path: Path, trace, name: str) -> None:
    write_trace(trace, tmp_path / name)
    back, skipped = read_trace(tmp_path / name)
    assert skipped == 0
    _same(trace, back, lifecycle=False)
    # A pod's first and last rows bound its lifetime.
    for p, pb in zip(trace.workloads[0].pods, back.workloads[0].pods, strict=True):
        assert pb.created == pytest.approx(p.first_sample())
        if p.deleted is not None:
            assert pb.deleted == pytest.approx(p.last_sample())
    text = (gzip.decompress((tmp_path / name).read_bytes()).decode() if name.endswith(".gz")
            else (tmp_path / name).read_text())
    assert text.splitlines()[0] == ("timestamp,namespace,workload,pod,container,cpu_cores,memory_bytes,"
                                    "cpu_request_cores,cpu_limit_cores,memory_request_bytes,memory_limit_bytes")


def test_csv_accepts_rfc3339_and_unix_timestamps_in_any_column_order(tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    p.write_text("pod,timestamp,namespace,workload,container,memory_bytes,cpu_cores,cpu_request_cores\n"
                 "a,2026-01-01T00:00:00Z,ns,web,app,1000,0.5,0.25\n"
                 "a,1767225615,ns,web,app,1000,0.7,0.25\n"
                 "a,2026-01-01T01:00:30+01:00,ns,web,app,1000,0.9,\n")
    with pytest.raises(CsvTraceError, match=r"mixed.csv:4: resources of container app in pod ns/a changed"):
        read_csv(p)
    p.write_text("pod,timestamp,namespace,workload,container,memory_bytes,cpu_cores,cpu_request_cores\n"
                 "a,2026-01-01T00:00:00Z,ns,web,app,1000,0.5,0.25\n"
                 "a,1767225615,ns,web,app,1000,0.7,0.25\n"
                 "a,2026-01-01T01:00:30+01:00,ns,web,app,1000,0.9,0.25\n")
    tr, _ = read_csv(p)
    c = tr.workloads[0].pods[0].containers[0]
    assert c.t.tolist() == [START, START + 15, START + 30]
    assert c.cpu.tolist() == [0.5, 0.7, 0.9] and c.cpu_request == 0.25 and c.cpu_limit is None
    assert tr.resolution == 15.0


BAD_ROWS = [
    ("2026-01-01T00:00:00Z,ns,web,a,app,0.5\n", "want 7 fields, got 6"),
    ("yesterday,ns,web,a,app,0.5,1000\n", "timestamp: want RFC 3339 or Unix seconds, got 'yesterday'"),
    ("1767225600,ns,web,a,app,-1,1000\n", "cpu_cores: want a finite number >= 0, got '-1'"),
    ("1767225600,ns,web,a,app,0.5,lots\n", "memory_bytes: not a number: 'lots'"),
    ("1767225600,ns,,a,app,0.5,1000\n", "workload: empty"),
    ("1767225600,ns,web,a,app,nan,1000\n", "cpu_cores: want a finite number >= 0"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_csv_bad_row_names_its_line(tmp_path: Path, row: str, message: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "1767225585,ns,web,a,app,0.5,1000\n" + row + "1767225615,ns,web,a,app,0.5,1000\n")
    with pytest.raises(CsvTraceError) as exc:
        read_csv(p)
    assert exc.value.line == 3
    assert str(exc.value).startswith(f"{p}:3: ")
    assert message in str(exc.value)


def test_csv_skip_invalid_counts_and_keeps_the_rest(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv.gz"
    body = HEADER + "1767225600,ns,web,a,app,0.5,1000\n" + "".join(r for r, _ in BAD_ROWS) + \
        "1767225615,ns,web,a,app,0.75,1000\n"
    p.write_bytes(gzip.compress(body.encode()))
    tr, skipped = read_trace(p, skip_invalid=True)
    assert skipped == len(BAD_ROWS)
    c = tr.workloads[0].pods[0].containers[0]
    assert c.cpu.tolist() == [0.5, 0.75]


def test_csv_header_and_duplicate_errors(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("timestamp,namespace,pod,container,cpu_cores,memory_bytes,gpu\n")
    with pytest.raises(CsvTraceError, match=r"h.csv:1: bad header: missing column\(s\) workload; unknown column\(s\) gpu"):
        read_csv(p)
    p.write_text(HEADER + "1767225600,ns,web,a,app,0.5,1000\n1767225615,ns,web,a,app,0.5,1000\n"
                 "1767225600,ns,web,a,app,0.6,1000\n")
    with pytest.raises(CsvTraceError, match=r"h.csv:4: duplicate sample .* same timestamp as line 2"):
        read_csv(p)
    p.write_text("")
    with pytest.raises(CsvTraceError, match="empty file"):
        read_csv(p)


def _doc(tr) -> str:
    from sim.replay.trace import to_document

    return json.dumps(to_document(tr), sort_keys=True)


CSV_VARIANTS = {
    # well-formed: the column reader takes these
    "exported": None,
    "shuffled columns, RFC 3339 times, spaces, a limit set on one container only": (
        "pod,timestamp,namespace,workload,container,memory_bytes,cpu_cores,cpu_request_cores,cpu_limit_cores\n"
        "a, 2026-01-01T00:00:00Z,ns,web, app,1000,0.5,0.25,1\n"
        "b,2026-01-01T00:00:00Z,ns ,web,app,2e3, 0.25,0.25,\n"
        "a,1767225615,ns,web,app ,1000,0.7,0.25,1\n"
        "b,1767225615,ns,web,app,2000,1e-05,0.25,\n"
        "a,2026-01-01T01:00:30+01:00,ns,web,app,1000,0.9,0.25,1\n"),
    # irregular: the row reader takes these, with the same result
    "quoted cells, a blank line, CRLF": (
        'timestamp,namespace,workload,pod,container,cpu_cores,memory_bytes\r\n'
        '1767225600,"ns",web,a,app,0.5,1000\r\n\r\n'
        '1767225615,ns,"web",a,app,"0.75",1000\r\n'),
}


@pytest.mark.parametrize("variant", list(CSV_VARIANTS))
@pytest.mark.parametrize("gz", [False, True])
def test_csv_column_reader_reads_like_the_row_reader(tmp_path: Path, trace, variant: str, gz: bool) -> None:
    """Well-formed files are read column-wise; the result is the row reader's, value for value."""
    from sim.replay.csvtrace import _read_columns

    p = tmp_path / ("t.csv.gz" if gz else "t.csv")
    text = CSV_VARIANTS[variant]
    if text is None:
        write_trace(trace, p)
    else:
        p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    columns = _read_columns(p)
    assert (columns is not None) == ("irregular" not in variant and "quoted" not in variant)
    fast, skipped = read_csv(p)
    rows, row_skipped = read_csv(p, skip_invalid=True)  # skip_invalid always takes the row reader
    assert skipped == row_skipped == 0
    assert _doc(fast) == _doc(rows)


def test_csv_column_reader_leaves_a_changing_resource_to_the_row_reader(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("timestamp,namespace,workload,pod,container,cpu_cores,memory_bytes,cpu_request_cores\n"
                 "1767225600,ns,web,a,app,0.5,1000,0.25\n1767225600,ns,web,b,app,0.5,1000,0.5\n"
                 "1767225615,ns,web,a,app,0.5,1000,0.5\n")
    with pytest.raises(CsvTraceError, match=r"r.csv:4: resources of container app in pod ns/a changed from 0.25"):
        read_csv(p)


def test_csv_column_reader_converts_numbers_like_float(tmp_path: Path) -> None:
    """Numbers in every spelling float() accepts (and some it refuses) come out as the row reader's."""
    spellings = ["0.5", "00.50", ".5", "5.", "5e-1", "5E-01", " 0.5", "0.5 ", "+0.5", "1_000", "1e3", "-0",
                 "123456789012345678", "0.1234567890123456789", "\u0663", "inf", "nan", "1.5.2", "", "0x10", "-1"]
    for k, spelling in enumerate(spellings):
        rows = ["timestamp,namespace,workload,pod,container,cpu_cores,memory_bytes"]
        rows += [f"{1767225600 + 15 * i},ns,web,p{i % 2},app,{spelling if i == 3 else '0.25'},"
                 f"{spelling if i == 4 else 1000}" for i in range(8)]
        p = tmp_path / f"n{k}.csv"
        p.write_text("\n".join(rows) + "\n", encoding="utf-8")
        by_rows, skipped = read_csv(p, skip_invalid=True)  # always the row reader
        if skipped:
            with pytest.raises(CsvTraceError, match=r":(5|6): "):
                read_csv(p)
        else:
            assert _doc(read_csv(p)[0]) == _doc(by_rows), spelling
