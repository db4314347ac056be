"""The streamed reader gives exactly the requests load_trace gives, or declines (issue 13)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equinox.errors import WorkloadError
from equinox.request import RequestSpec
from equinox.workload import load_workload
from equinox.workload.io import write_workload
from equinox.workload.parsing import iter_csv_rows
from equinox.workload.schema import Workload
from equinox.workload.stream import _csv_reader, open_stream


def _trace(tmp_path: Path, *, ids: bool = True, tenants: bool = True, ties: bool = True, weights: bool = False,
           n: int = 300) -> Path:
    rng = random.Random(3)
    t, specs = 0.0, []
    for i in range(n):
        if not (ties and rng.random() < 0.2):
            t += rng.expovariate(4.0)  # a fifth of the requests arrive with the previous one
        tenant = f"t{rng.randrange(4)}" if tenants else "default"
        rid = f"q{rng.randrange(10**6)}-{i}" if ids else f"r{i}"
        specs.append(RequestSpec(rid, tenant, t, rng.randint(1, 500), rng.randint(1, 300),
                                 rng.choice([None, 50]), tenant_weight=2.0 if weights and tenant == "t1" else None))
    path = tmp_path / "trace.csv"
    write_workload(Workload("my-trace", tuple(specs), source="test"), path)
    if not ids or not tenants:  # drop the column: load_trace then generates ids / uses one tenant
        lines = path.read_text().splitlines()
        col = lines[1].split(",").index("request_id" if not ids else "tenant")
        path.write_text("\n".join([lines[0]] + [",".join(c for k, c in enumerate(ln.split(",")) if k != col)
                                                for ln in lines[1:]]) + "\n")
    return path


@pytest.mark.parametrize("kw", [{}, {"ids": False}, {"tenants": False}, {"weights": True}, {"ties": False}])
@pytest.mark.parametrize("opts", [{}, {"rate_scale": 3.0}, {"duration_s": 20.0}, {"seed": 5, "rate_scale": 0.5}])
def test_stream_equals_load_trace(tmp_path: Path, kw: dict, opts: dict) -> None:
    path = _trace(tmp_path, **kw)
    whole = load_workload(str(path), **opts)
    stream = open_stream(str(path), **opts)
    assert stream is not None
    assert list(stream) == list(whole.requests)
    assert list(stream) == list(whole.requests)  # every pass rereads the file
    assert stream.num_requests == whole.num_requests and stream.duration_s == whole.duration_s
    assert (stream.name, stream.source, stream.tenant_assignment, stream.tenant_label) == (
        whole.name, whole.source, whole.tenant_assignment, whole.tenant_label)
    assert stream.tenant_weights == dict(whole.tenant_weights) and stream.tenants == tuple(whole.tenants)
    specs = list(stream)
    names = {spec.tenant: spec.tenant for spec in specs}
    assert all(spec.tenant is names[spec.tenant] for spec in specs)  # one string per tenant, within a pass


def test_stream_declines_what_it_cannot_stream(tmp_path: Path, write) -> None:
    unsorted = write("u.csv", "request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens\n"
                     "a,x,2.0,5,5\nb,x,1.0,5,5\n")
    assert open_stream(str(unsorted)) is None
    assert [r.request_id for r in load_workload(str(unsorted)).requests] == ["b", "a"]  # sorted by load_trace
    no_tenant = write("n.csv", "request_id,arrival_time,num_prompt_tokens,num_output_tokens\na,1.0,5,5\n")
    assert open_stream(str(no_tenant), num_tenants=3) is None  # tenants drawn over the whole trace
    duplicate = write("d.csv", "request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens\n"
                      "a,x,1.0,5,5\na,x,2.0,5,5\n")
    assert open_stream(str(duplicate)) is None
    assert open_stream("overload") is None and open_stream(str(tmp_path / "missing.csv")) is None


def test_stream_reports_a_bad_row_with_its_line(tmp_path: Path, write) -> None:
    bad = write("b.csv", "request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens\n"
                "a,x,1.0,5,5\nb,x,2.0,0,5\n")
    stream = open_stream(str(bad))
    assert stream is not None
    with pytest.raises(WorkloadError, match=r"b\.csv:3: field .num_prompt_tokens"):
        list(stream)


def _streamed_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line, fields) of the rows that are not blank, as the streamed reader reads them."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = _csv_reader(fh)
        return [(reader.line_num, row) for row in reader if row and not (len(row) == 1 and not row[0].strip())]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet='ab1 ,"#\r\n\t', max_size=12), max_size=12), st.integers(1, 5))
def test_streamed_reader_reads_the_rows_and_lines_iter_csv_rows_reads(tmp_path: Path, lines: list[str],
                                                                      repeat: int) -> None:
    """Comments anywhere (also inside a quoted field), blank lines, quoted line breaks, CR and CRLF endings."""
    path = tmp_path / "rows.csv"
    path.write_text("".join(lines) * repeat, newline="", encoding="utf-8")
    assert _streamed_rows(path) == list(iter_csv_rows(path, skip_comments=True))


def test_streamed_reader_reads_a_long_file_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("".join(f'# {i}\nr{i},"a\n#b",{i}\n\n' for i in range(20000)), newline="", encoding="utf-8")
    assert _streamed_rows(path) == list(iter_csv_rows(path, skip_comments=True))


def test_stream_reports_a_file_that_is_not_utf8_as_load_trace_does(tmp_path: Path, write) -> None:
    head = "request_id,tenant,arrival_time,num_prompt_tokens,num_output_tokens\na,x,1.0,5,5\n"
    path = write("t.csv", head)
    stream = open_stream(str(path))
    assert stream is not None
    path.write_bytes(head.encode() + b"b,x,2.0,5,5\n" * 9000 + b"c,\xff,3.0,5,5\n")  # changed after the pre-scan
    with pytest.raises(WorkloadError) as streamed:
        list(stream)
    with pytest.raises(WorkloadError) as whole:
        load_workload(str(path))
    assert str(streamed.value) == str(whole.value) and "not UTF-8" in str(streamed.value)
