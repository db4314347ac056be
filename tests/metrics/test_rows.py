"""Run-directory CSV rows: `num` writes exactly `repr(round(x, 9))`, the rows match their record-based form."""

from __future__ import annotations

import csv
import io
import math
import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from equinox.metrics.collector import RequestRecord
from equinox.metrics.rows import (
    CounterLines,
    RequestRows,
    counter_rows,
    counter_text,
    fnum,
    line_of,
    nine_places,
    num,
    request_row,
    request_row_of,
    shortest_places,
    write_service_rows,
    write_step_rows,
)
from equinox.request import Request, RequestSpec, RequestStatus


def reference(x: int | float | None) -> str:
    """What every run directory wrote before `num` took its quick path."""
    if x is None or x != x:
        return ""
    return repr(round(x, 9))


def check(x: int | float) -> None:
    assert num(x) == reference(x), x
    if x == x:
        assert fnum(x) == reference(x), x
    assert num(-x) == reference(-x), -x


BOUNDARIES = [1e-4, 1e6, 9.9999999995e-5, 1.00000000005e-4, 999999.9999999995, 999999.999999999, 1e6 - 1e-9,
              0.0001000000005, 0.00009999999950000001, 5e-10, 4.9999999999e-10, 1e-9, 0.5e-9,
              8388608.0, 8388607.999999999, 8388608.000000002, 4194304.0000000005, 6227478.170549719, 1e16, 1.5e300]


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
@example(0.0)
@example(-0.0)
@example(12.0)
@example(0.1 + 0.2)
def test_num_is_repr_round_9_for_any_float(x: float) -> None:
    check(x)


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=1e-5, max_value=2e6, allow_nan=False) | st.floats(min_value=1e6, max_value=9e6))
def test_num_in_and_around_the_quick_range(x: float) -> None:
    check(x)


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=0, max_value=2**40 * 1024))
def test_num_on_binary_ties(m: int) -> None:
    """m / 1024 and m / 2**40 are exact in binary: decimal ties at the tenth place round half to even."""
    check(m / 1024)
    check(m / 2**40)
    check(m / 10**9 + m % 7 * 5e-10)


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=10**5, max_value=10**15 - 1), st.sampled_from(
    [0.0, 1e-7, 0.0625, 0.3, 0.37, 0.375, 0.3751, 0.44, 0.5, 0.56, 0.6249, 0.625, 0.63, 0.9375, 0.9999999]))
def test_num_where_the_integer_path_decides_and_where_it_hands_over(k: int, frac: float) -> None:
    """The quick range's integer path rounds x * 1e9 to the nearest integer unless it lies exactly half-way:
    values at, beside and away from such halves, and the doubles next to them."""
    x = (k + frac) / 10**9
    for y in (x, math.nextafter(x, 0.0), math.nextafter(x, math.inf)):
        check(y)
        if 1e-4 <= y < 1e6:  # the compiled core's path, checked here on whichever core runs the tests
            text = nine_places(y)
            assert text == reference(y) or (text == "" and (y * 1e9) % 1.0 == 0.5), y


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=1e-4, max_value=8388608.0, exclude_max=True) | st.floats(min_value=4.5e6, exclude_max=True,
                                                                                    max_value=8388608.0))
@example(math.nextafter(8388608.0, 0.0))
@example(4503599.627370497)  # x * 1e9 just above 2**52: doubles there are the integers
def test_nine_places_is_repr_round_9_in_the_quick_range(x: float) -> None:
    text = nine_places(x)
    assert text == reference(x) or (text == "" and (x * 1e9) % 1.0 == 0.5), x


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=8388608.0, max_value=4503599627370496.0, exclude_max=True))
@example(482313049.20000005)  # 17 digits; the product's error lo is below -1
@example(9015592.495419351)  # 16 digits whose k is past 2**53 (a UFC counter of a 1M run)
@example(9030180.351953443)
@example(150000000000000.25)  # the 16-digit product is a half: left to repr
@example(1e15 + 0.5)
@example(4503599627370495.5)
@example(99999999.99999999)
def test_shortest_places_is_repr_or_leaves_it_to_repr(x: float) -> None:
    """Large non-whole values (growing counters): the compiled core's path writes repr(x) or hands over."""
    if x.is_integer():
        return
    for y in (x, math.nextafter(x, 0.0), math.nextafter(x, math.inf)):
        if not y.is_integer() and y < 4503599627370496.0:
            text = shortest_places(y)
            assert text in ("", repr(y)), y
        check(y)


def test_shortest_places_decides_nearly_every_counter_value() -> None:
    """It hands over only at halves: of counter-like values (tokens times a discount, summed), none."""
    rng = random.Random(7)
    total = 8388608.0
    decided = 0
    for _ in range(20000):
        total += rng.randint(1, 4000) * rng.uniform(0.5, 1.0)
        text = shortest_places(total)
        assert text in ("", repr(total))
        decided += text != ""
    assert decided == 20000


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=2**23, max_value=2**54))
def test_num_on_large_whole_values(k: int) -> None:
    """Whole counts (VTC's counters) past 2**23: 'N.0', as repr, on both sides of 2**53."""
    check(float(k))


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=-10**15, max_value=10**15))
def test_num_on_values_already_rounded(k: int) -> None:
    check(k / 10**9)  # the shortest text of a value with 9 decimals or fewer
    check(k)  # ints print as ints, as repr(round(int, 9)) does


def test_num_boundaries_and_specials() -> None:
    for x in BOUNDARIES:
        check(x)
        check(math.nextafter(x, 0.0))
        check(math.nextafter(x, math.inf))
    assert num(None) == "" and num(math.nan) == ""
    assert fnum(math.nan) == "nan" and fnum(math.inf) == "inf" and num(-math.inf) == "-inf"
    assert num(-0.0) == "-0.0" and num(0) == "0" and num(12.0) == "12.0" and num(3) == "3"
    assert num(True) == "1"
    for x in (1.0, -1.0, 2.0, 999999.0, -999999.0, 1e6, 123456.0, 4096.0, 0.0, -0.0, 1e-4 * 10000):
        check(x)


def live_request(i: int, *, arrival: float, done: int, first: float | None, finish: float | None,
                 scheduled: float | None, status: RequestStatus = RequestStatus.FINISHED) -> Request:
    req = Request(RequestSpec(f"r{i}", "t0" if i % 2 else "t1", arrival, 17, 9, max_tokens=None))
    req.num_output_tokens_done = done
    req.first_token_time, req.finish_time, req.first_scheduled_time = first, finish, scheduled
    req.max_itl_s = 0.0123456789 * i
    req.num_preemptions = i % 3
    req.status = status
    if status is RequestStatus.REJECTED:
        req.reject_reason = "too long"
    return req


def requests() -> list[Request]:
    return [
        live_request(1, arrival=0.5, done=9, first=0.75, finish=2.125, scheduled=0.6),
        live_request(2, arrival=1.0 / 3, done=1, first=0.4, finish=0.4, scheduled=1.0 / 3),
        live_request(3, arrival=7.0, done=0, first=None, finish=None, scheduled=None, status=RequestStatus.REJECTED),
        live_request(4, arrival=1234567.25, done=3, first=1234568.0, finish=None, scheduled=1234567.5,
                     status=RequestStatus.RUNNING),
        live_request(5, arrival=0, done=2, first=1e-5, finish=2e-5, scheduled=0.0),  # an int arrival time
    ]


def test_request_row_of_equals_the_record_row() -> None:
    for req in requests():
        assert request_row_of(req) == request_row(RequestRecord.from_request(req))


def csv_text(rows: list[list[str]] | list[tuple[object, ...]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def test_request_rows_batches_in_order() -> None:
    batches: list[str] = []
    sink = RequestRows(batches.append, batch=2)
    reqs = requests()
    for req in reqs:
        sink(req)
    sink.flush()
    sink.flush()  # nothing left: no empty batch
    assert [b.count("\n") for b in batches] == [2, 2, 1]
    assert "".join(batches) == csv_text([request_row_of(r) for r in reqs])


NAMES = st.one_of(st.sampled_from(["r1", "t0", "tenant-3", "a,b", 'say "hi"', "two\nlines", "cr\r", " x "]),
                  st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=5))
TIMES = st.one_of(st.none(), st.floats(min_value=0, max_value=3e7), st.sampled_from([0.0, 0.25, 1e6, 8388608.5]))


@st.composite
def live_requests(draw: st.DrawFn) -> Request:
    """A request leaving the engine: any id, tenant and reason text, any times (None too), repeated ITLs."""
    arrival = draw(st.one_of(st.floats(min_value=0, max_value=3e7), st.integers(0, 5)))
    req = Request(RequestSpec(draw(NAMES), draw(NAMES), arrival, draw(st.integers(1, 10**6)), 5))
    req.first_scheduled_time, req.first_token_time, req.finish_time = draw(TIMES), draw(TIMES), draw(TIMES)
    req.num_output_tokens_done = draw(st.integers(0, 3))
    req.max_itl_s = draw(st.one_of(st.sampled_from([0.0, -0.0, 0, 1, 1.0, 0.05, math.nan]), st.floats()))
    req.num_preemptions = draw(st.integers(0, 2))
    req.status = draw(st.sampled_from(list(RequestStatus)))
    req.reject_reason = draw(st.one_of(st.none(), NAMES, st.just("")))
    return req


@settings(max_examples=500, deadline=None)
@given(st.lists(live_requests(), min_size=1, max_size=6))
def test_request_lines_are_the_rows_csv_writer_writes(reqs: list[Request]) -> None:
    """One line a request, through one writer (its tenant and ITL caches), as csv.writer writes the row."""
    batches: list[str] = []
    sink = RequestRows(batches.append, batch=3)
    for req in reqs + reqs[::-1]:  # each request again: its tenant is then known, its ITL often the last one
        sink(req)
    sink.flush()
    assert "".join(batches) == csv_text([request_row_of(r) for r in reqs + reqs[::-1]])


def test_request_lines_tell_an_equal_itl_of_another_type_or_zero() -> None:
    reqs = []
    for itl in (1, 1.0, 1, 1.0, 1.0, 0.0, -0.0, 0.0, math.nan, math.nan):  # an int ITL: pure-Python callers
        req = live_request(1, arrival=0.5, done=9, first=0.75, finish=2.125, scheduled=0.6)
        req.max_itl_s = itl
        reqs.append(req)
    batches: list[str] = []
    sink = RequestRows(batches.append)
    for req in reqs:
        sink(req)
    sink.flush()
    assert "".join(batches) == csv_text([request_row_of(r) for r in reqs])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=6), min_size=1, max_size=4))
@example(["a,b", 'say "hi"', "two\nlines", "cr\r", "", " padded ", "tab\t", "é", "\x00"])
@example([""])
def test_lines_are_what_csv_writer_writes(fields: list[str]) -> None:
    assert line_of(fields) == csv_text([fields])
    lines = CounterLines()  # names are quoted once, then taken from its cache
    for counters in ({"k": {f: 1.0 for f in fields}}, {f: {"t": 2.5, f: 1 / 3} for f in fields}):
        assert counter_text(0.5, counters) == csv_text(counter_rows(0.5, counters))
        assert lines(7, counters) == lines(7, counters) == csv_text(counter_rows(7, counters))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.one_of(
    st.sampled_from([0.0, -0.0, 0, 1, 1.0, 3e7, float("nan"), float("inf")]), st.floats(), st.integers(-5, 5)),
    min_size=1), min_size=1, max_size=8))
def test_counter_lines_reusing_unchanged_values_write_what_counter_rows_write(
        intervals: list[dict[str, float]]) -> None:
    """Interval after interval, with values kept (the same object), equal, changed, of the other zero or type."""
    lines = CounterLines()
    for i, values in enumerate(intervals):
        counters = {"ufc": values, "vtc": dict(values)}
        assert lines(i, counters) == csv_text(counter_rows(i, counters))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["vtc", "hf", "ufc", "a,b"]), st.dictionaries(
    st.sampled_from(["a", "b", "c", 'q"t']), st.floats(allow_nan=False, min_value=-10, max_value=10), min_size=1),
    min_size=1), min_size=1, max_size=8))
def test_counter_lines_keep_their_sorted_order_only_while_the_names_stay(
        intervals: list[dict[str, dict[str, float]]]) -> None:
    """Kinds and tenants that come and go, or come back in another order, are still written sorted."""
    lines = CounterLines()
    for i, counters in enumerate(intervals + [{k: dict(reversed(v.items())) for k, v in reversed(c.items())}
                                              for c in intervals]):
        assert lines(i, counters) == csv_text(counter_rows(i, counters))


def test_counter_rows_sorted_by_kind_then_tenant() -> None:
    rows = counter_rows(3 * 0.5, {"vtc": {"b": 2.0, "a": 1 / 3}, "hf": {"a": 0}})
    assert rows == [("1.5", "hf", "a", "0"), ("1.5", "vtc", "a", "0.333333333"), ("1.5", "vtc", "b", "2.0")]


def test_step_and_service_rows_as_written_before() -> None:
    """The old per-row loops of write_run_tail, with an int interval and a plain-dict (live run) series."""
    cols = [[0.5, 1.0, 2.0], [3, 0, 7]]
    service = {2: [10, 3], 0: [1, 1]}
    resource = {0: [0.25, 1e-7]}
    for dt in (1, 0.25):
        for tenant in ("t", 'a "quoted", tenant'):
            got: list[str] = []
            write_step_rows(got.append, cols, 3, dt, batch=2)
            assert "".join(got) == csv_text([(reference(i * dt), *(reference(float(c[i])) for c in cols))
                                              for i in range(3)])
            got = []
            times: dict[int, str] = {1: "not used", 2: reference(2 * dt)}  # shared: another tenant's texts
            write_service_rows(got.append, tenant, service, resource, 2.0, 1, 2.0, dt, batch=1, times=times)
            assert times == {0: reference(0 * dt), 1: "not used", 2: reference(2 * dt)}
            write_service_rows(got.append, tenant, service, resource, 2.0, 1, 2.0, dt, batch=1)
            assert got[:2] == got[2:]
            got = got[:2]
            want = []
            for i, (p, o) in sorted(service.items()):
                g, kv = resource.get(i, (0.0, 0.0))
                want.append((reference(i * dt), tenant, p, o, reference((1 * p + 2.0 * o) / 2.0), reference(g),
                             reference(kv)))
            assert "".join(got) == csv_text(want)
