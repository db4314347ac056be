"""The run directory's CSV rows: numbers as text, request and counter rows (compiled with the core, issue 13).

Every number a run directory's CSV files hold is `repr(round(x, 9))` (`num`); the rows
here are built straight from the live request or the collector's values, a million times
in a large run, so this module is in setup.py's COMPILED_MODULES. The same file is the
pure-Python fallback and writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from equinox.compiled import is_extension
from equinox.metrics.collector import RequestRecord
from equinox.request import Request, RequestStatus

REQUEST_COLUMNS = (
    "request_id", "tenant", "arrival_time", "num_prompt_tokens", "num_output_tokens",
    "num_requested_tokens", "first_scheduled_time", "first_token_time", "finish_time",
    "ttft_s", "tpot_s", "e2e_s", "queue_s", "max_itl_s", "num_preemptions", "status", "reject_reason",
)
COUNTER_COLUMNS = ("time", "kind", "tenant", "value")
ROW_BATCH = 4096  # rows handed to csv.writer.writerows at a time
# This module runs compiled (an extension module, not this .py file): `fnum` takes `nine_places`.
IS_NATIVE: Final = is_extension(__file__)


def num(x: int | float | None) -> str:  # not `float`: mypyc would turn an int into a float ('3' -> '3.0')
    """`repr(round(x, 9))`, '' for None and NaN: the text of every number in a run directory's CSV files.

    For a float with 1e-4 <= |x| < 2**23 it is '%.9f' without its trailing zeros (one digit
    stays after the point: '12.0'), about twice as fast: '%.9f' rounds the exact binary
    value to 9 decimals as round() does (correctly, ties to even). Below 2**23 doubles are
    less than 1e-9 apart, so two different decimals of at most 9 places never read back as
    the same double: that decimal is the only text of at most 9 places for round()'s double,
    hence the shortest, which is what repr prints (it has at most 16 significant digits, and
    repr uses no exponent in this range). On the compiled core a positive x's decimal comes
    from integer arithmetic instead (`nine_places`).
    """
    if x is None or x != x:  # None or NaN
        return ""
    return fnum(x)


def fnum(x: int | float) -> str:
    """`repr(round(x, 9))` of a number that is not None (NaN: 'nan'): `num` without its None and NaN check."""
    if type(x) is float:
        if IS_NATIVE and 1e-4 <= x < 8388608.0:
            text = nine_places(x)
            if text:
                return text
        if 1e-4 <= x < 8388608.0 or -8388608.0 < x <= -1e-4:  # inline, not a helper: this runs millions of times
            if x.is_integer():  # counts, and times on whole intervals: repr gives 'N.0'
                return str(int(x)) + ".0"
            s = f"{x:.9f}".rstrip("0")
            return s + "0" if s[-1] == "." else s
        if x >= 8388608.0 or x <= -8388608.0:  # |x| >= 2**23 (and inf): doubles there are over 1e-9 apart,
            # so round(x, 9) is x itself (growing counters, long runs' times): repr(x), the shortest text.
            if -9007199254740992.0 <= x <= 9007199254740992.0 and x.is_integer():
                return str(int(x)) + ".0"  # whole counts (VTC's): below 2**53 repr prints every digit
            if IS_NATIVE and 0.0 < x < 4503599627370496.0:  # 2**23 <= x < 2**52: `shortest_places`, else repr
                text = shortest_places(x)
                if text:
                    return text
            return repr(x)
        if x == 0.0:
            return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    return _repr_round(x)


def nine_places(x: float) -> str:
    """'%.9f' of 1e-4 <= x < 2**23 without its trailing zeros (`num`'s quick range), from integer arithmetic;
    '' when x * 1e9 lies exactly half-way between two integers (a tie, or beside one: '%.9f' decides).

    y = x * 1e9 is the exact product P rounded to a double. Below 2**52 every k + 1/2 is a
    double and rounding never reorders, so y < k + 1/2 only if P is, and y > k + 1/2 only if
    P is: the integer nearest y is the one nearest P. From 2**52 to 2**53 (x * 1e9 stays
    below 2**53 in this range) doubles are the integers, so y is the integer nearest P, ties
    to even, as '%.9f' rounds. Several times faster than '%.9f' compiled (no float formatting),
    slower interpreted: `fnum` takes it only on the compiled core.
    """
    y = x * 1e9
    k = int(y)
    frac = y - k
    if frac == 0.5:
        return ""
    if frac > 0.5:
        k += 1
    whole = k // 1000000000
    part = k - whole * 1000000000
    if part == 0:  # counts, and times on whole intervals: repr gives 'N.0'
        return _WHOLE_POINT_ZERO[whole] if whole < _NUM_WHOLE_POINT else str(whole) + ".0"
    head = _WHOLE_POINT[whole] if whole < _NUM_WHOLE_POINT else str(whole) + "."  # small ones from a table
    # The nine decimals as three groups of three digits from tables, the last non-zero group without its
    # trailing zeros, joined in one string build (not a loop over the digits, str() and two concatenations)
    high = part // 1000000
    low = part - high * 1000000
    mid = low // 1000
    low -= mid * 1000
    if low:
        return f"{head}{_DIGITS3[high]}{_DIGITS3[mid]}{_TRIMMED3[low]}"
    if mid:
        return f"{head}{_DIGITS3[high]}{_TRIMMED3[mid]}"
    return f"{head}{_TRIMMED3[high]}"


_NUM_WHOLE_POINT: Final = 1024
_WHOLE_POINT: Final = [str(n) + "." for n in range(_NUM_WHOLE_POINT)]  # nine_places' '0.' ... '1023.'
_WHOLE_POINT_ZERO: Final = [str(n) + ".0" for n in range(_NUM_WHOLE_POINT)]  # and '0.0' ... '1023.0'
_DIGITS3: Final = [f"{n:03d}" for n in range(1000)]  # '000' ... '999'
_TRIMMED3: Final = [f"{n:03d}".rstrip("0") for n in range(1000)]  # and without trailing zeros ('' for 0, unused)


# `tuple[float, ...]`, not a fixed-length tuple: mypyc would box all 17 to index one by a variable
_POW10: Final[tuple[float, ...]] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                                   1e15, 1e16)
_SPLIT: Final = 134217729.0  # 2**27 + 1: Veltkamp's split of a double into two 26-bit halves


def shortest_places(x: float) -> str:
    """repr(x) of a non-whole 2**23 <= x < 2**52, from float and integer arithmetic; '' where a decision
    falls within 1e-9 of its boundary (repr decides those).

    repr is the shortest decimal that reads back as x, the nearest to x among those. A decimal of
    at most 15 significant digits that reads back lies within half an ulp of x, under a ninth of
    the spacing of 15-digit decimals: it is the 15-digit decimal nearest x, less trailing zeros.
    If that one does not read back, no shorter decimal does, and repr is the 16-digit decimal
    nearest x if that reads back, else the 17-digit one (17-digit decimals are closer together
    than an ulp: the nearest always reads back). With n digits before the point, the s-digit
    decimal nearest x is k / 10**d, d = s - n, k the integer nearest P = x * 10**d. P is held
    exactly as hi + lo (Dekker's product: hi the rounded product, lo its error), so k is found
    from a fraction known to about 1e-16. Below 2**53, k and 10**d are exact doubles and
    k / 10**d is the correctly rounded quotient, as float() reads the text: it reads back
    exactly when it equals x. Past 2**53, P >= 2**53 makes x >= 2**53 * 10**-d, so an ulp of x
    (over x * 2**-53) exceeds the spacing 10**-d of those decimals: the nearest reads back.
    Faster than repr compiled (280 against 420 ns on the UFC counters of a 1M run: millions of
    rows); slower interpreted, so `fnum` takes it on the compiled core only.
    """
    n = 7  # digits before the point: x >= 2**23 has at least 7
    while x >= _POW10[n]:
        n += 1
    c = _SPLIT * x
    xh = c - (c - x)
    xl = x - xh
    for sig in (15, 16, 17):
        d = sig - n
        if d < 1:  # x >= 1e14: no place after the point at this length
            continue
        scale = _POW10[d]
        c = _SPLIT * scale
        sh = c - (c - scale)
        sl = scale - sh
        hi = x * scale
        lo = ((xh * sh - hi) + xh * sl + xl * sh) + xl * sl  # x * scale == hi + lo exactly
        base = int(hi)
        t = (hi - base) + lo  # P - base, within about 2e-16
        j = int(t + 16.5) - 16  # floor(t + 1/2): |lo| <= half an ulp of hi <= 8 (P < 1e17 < 2**57)
        dist = t - j
        if -1e-9 < abs(dist) - 0.5 < 1e-9:
            return ""  # P at (or beside) a half: which integer is nearest is left to repr
        k = base + j
        if sig < 17 and k < 9007199254740992 and k / scale != x:
            continue  # (past 2**53 the 16-digit decimals are closer together than an ulp of x)
        unit = int(scale)
        part = k % unit
        if part == 0:  # cannot be (a whole number does not read back as x): leave it to repr
            return ""
        width = d
        while part % 10 == 0:
            part //= 10
            width -= 1
        digits = str(part)
        return str(k // unit) + "." + "0" * (width - len(digits)) + digits
    return ""


def _repr_round(x: Any) -> str:  # `Any`: compiled, round() of an `int | float` would make the int a float
    return repr(round(x, 9))  # an int rounds to itself: str(x)


def request_row(r: RequestRecord) -> list[str]:
    """One requests.csv row."""
    status = "rejected" if r.reject_reason is not None else ("finished" if r.finish_time is not None else "unfinished")
    return [
        r.request_id, r.tenant, num(r.arrival_time), str(r.num_prompt_tokens), str(r.num_output_tokens),
        str(r.num_requested_tokens), num(r.first_scheduled_time), num(r.first_token_time),
        num(r.finish_time), num(r.ttft_s), num(r.tpot_s), num(r.e2e_s), num(r.queue_s),
        num(r.max_itl_s), str(r.num_preemptions), status, r.reject_reason or "",
    ]


def request_row_of(req: Request) -> list[str]:
    """`request_row(RequestRecord.from_request(req))`, the same strings, without the record (the streamed path)."""
    spec = req.spec
    arrival = spec.arrival_time
    scheduled = req.first_scheduled_time
    first = req.first_token_time
    finish = req.finish_time
    num_output = req.num_output_tokens_done
    reason = req.reject_reason if req.status is RequestStatus.REJECTED else None
    status = "rejected" if reason is not None else ("finished" if finish is not None else "unfinished")
    return [
        spec.request_id, spec.tenant, fnum(arrival), str(spec.num_prompt_tokens), str(num_output),
        str(req.num_target_tokens),
        "" if scheduled is None else fnum(scheduled),
        "" if first is None else fnum(first),
        "" if finish is None else fnum(finish),
        "" if first is None else fnum(first - arrival),
        "" if finish is None or first is None or num_output < 2 else fnum((finish - first) / (num_output - 1)),
        "" if finish is None else fnum(finish - arrival),
        "" if scheduled is None else fnum(scheduled - arrival),
        num(req.max_itl_s), str(req.num_preemptions), status, reason or "",
    ]


class RequestRows:
    """A request sink that writes each request's requests.csv line, handed to `write` in batches."""

    def __init__(self, write: Callable[[str], object], *, batch: int = ROW_BATCH) -> None:
        self._write = write
        self._batch = batch
        self._lines: list[str] = []

    def __call__(self, req: Request) -> None:
        """Add the line of a request leaving the engine."""
        lines = self._lines
        lines.append(self.line(req))
        if len(lines) >= self._batch:
            self.flush()

    def line(self, req: Request) -> str:
        """`line_of(request_row_of(req))`: of a row's fields only the id, tenant and reject reason are text that
        can need quoting (the others are numbers and a status word), so only those three are checked."""
        row = request_row_of(req)
        if is_plain(row[0]) and is_plain(row[1]) and is_plain(row[16]):
            return ",".join(row) + "\n"
        return line_of(row)

    def flush(self) -> None:
        """Write the lines held."""
        if self._lines:
            text = "".join(self._lines)
            self._lines = []
            self._write(text)


def counter_rows(time: Any, counters: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """counters.csv rows of one interval: by kind, then tenant."""
    t = num(time)
    out: list[tuple[str, str, str, str]] = []
    for kind, values in sorted(counters.items()):
        for tenant, value in sorted(values.items()):
            out.append((t, kind, tenant, num(value)))
    return out


_UNWRITTEN: Final = object()  # no value written yet (equal to no number)


class _KindLines:
    """One counter kind's lines as last written: its tenants in the order given and sorted, and per sorted
    tenant its 'kind,tenant,' text, the value last written and that line without its time and line end."""

    def __init__(self, given: list[str], names: list[str]) -> None:
        self.given = given
        n = len(given)
        self.order = sorted(range(n), key=given.__getitem__)  # sorted position -> position in `given`
        self.names = [names[j] for j in self.order]
        self.last: list[Any] = [_UNWRITTEN] * n
        self.tails = [""] * n


class CounterLines:
    """counters.csv's lines, one interval at a time (`counter_rows` as CSV text); each name is quoted once.

    A counter that has not changed since the previous interval (most of an idle tenant's; the
    policy hands over the same float object, or an equal one of the same type) reuses its text:
    formatting a float exactly is most of a line's cost. The sorted order of kinds and of a
    kind's tenants is kept while their names stay the same (the same tenants, interval after
    interval), and each line's text after the time is kept by sorted position: every line of an
    interval starts with the same time, so the interval is `time + (newline + time).join(tails) + newline`.
    """

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}
        self._kinds: dict[str, _KindLines] = {}
        self._kind_order: tuple[list[str], list[str]] = ([], [])  # (names as given, sorted)

    def __call__(self, time: Any, counters: Mapping[str, Mapping[str, Any]]) -> str:
        """The lines of one interval: by kind, then tenant."""
        tails: list[str] = []
        kinds = list(counters)
        if kinds != self._kind_order[0]:
            self._kind_order = (kinds, sorted(kinds))
        for kind in self._kind_order[1]:
            values = counters[kind]
            lines = self._kinds.get(kind)
            given = list(values)
            if lines is None or lines.given != given:
                lines = self._kinds[kind] = _KindLines(given, [self._name(kind, t) for t in given])
            current = list(values.values())
            last = lines.last
            texts = lines.tails
            names = lines.names
            k = 0
            for j in lines.order:
                value = current[j]
                old = last[k]
                if not (old is value or (type(old) is type(value) and old == value and value != 0)):
                    # changed (0.0 and -0.0 differ, so a zero is written again)
                    last[k] = value
                    texts[k] = names[k] + num(value)
                tails.append(texts[k])
                k += 1
        if not tails:
            return ""
        t = num(time) + ","
        return t + ("\n" + t).join(tails) + "\n"  # tails without their line ends: one concatenation less each

    def _name(self, kind: str, tenant: str) -> str:
        return self._field(kind) + "," + self._field(tenant) + ","

    def _field(self, name: str) -> str:
        text = self._fields.get(name)
        if text is None:
            text = self._fields[name] = name if is_plain(name) else csv_line(["", name])[1:-1]
        return text


def counter_text(time: Any, counters: Mapping[str, Mapping[str, Any]]) -> str:
    """counters.csv's lines of one interval (`counter_rows` as CSV text)."""
    return CounterLines()(time, counters)


def line_of(fields: Sequence[str]) -> str:
    """One CSV line of text fields, as csv.writer(lineterminator='\n') writes it: plain fields are joined."""
    if len(fields) < 2:
        return csv_line(fields)  # a lone empty field is written quoted
    for f in fields:
        if not is_plain(f):
            return csv_line(fields)
    return ",".join(fields) + "\n"


def is_plain(field: str) -> bool:
    """Whether csv.writer writes `field` as it is (no delimiter, quote or line break to quote)."""
    return not ("," in field or '"' in field or "\n" in field or "\r" in field)


def csv_line(fields: Sequence[Any]) -> str:
    """One line through csv.writer itself (fields that need quoting)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


# Numbers that reach arithmetic here are `Any`: compiled, an `int | float` would be computed as a float.


def write_step_rows(write: Callable[[str], object], columns: list[Any], num_intervals: int, interval_s: Any, *,
                    batch: int = ROW_BATCH) -> None:
    """steps.csv's lines after the header: the interval's start time, then each column's value as a float."""
    lines: list[str] = []
    for i in range(num_intervals):
        lines.append(",".join([num(i * interval_s), *[num(float(c[i])) for c in columns]]) + "\n")
        if len(lines) >= batch:
            write("".join(lines))
            lines = []
    if lines:
        write("".join(lines))


def write_service_rows(write: Callable[[str], object], tenant: str, service: Any, resource: Any, weight: Any,
                       prompt_weight: Any, output_weight: Any, interval_s: Any, *, batch: int = ROW_BATCH,
                       times: dict[int, str] | None = None) -> None:
    """One tenant's service.csv lines: `service` and `resource` read like {interval index: (x, y)}.

    `times` holds interval starts' texts by index, shared by the tenants of one file (one dict, all the tenants).
    """
    cells = dict(resource.items())
    zero = (0.0, 0.0)
    name = tenant if is_plain(tenant) else csv_line([tenant])[:-1]
    if times is None:
        times = {}
    lines: list[str] = []
    for i, (p, o) in sorted(service.items()):
        g, kv = cells.get(i, zero)
        t = times.get(i)
        if t is None:
            t = times[i] = num(i * interval_s)
        lines.append(f"{t},{name},{p},{o},{num((prompt_weight * p + output_weight * o) / weight)},{num(g)},{num(kv)}\n")
        if len(lines) >= batch:
            write("".join(lines))
            lines = []
    if lines:
        write("".join(lines))
