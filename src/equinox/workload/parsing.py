"""Row-level parsing shared by every trace format: field checks, bad-row policy, file readers.

Every malformed value raises `WorkloadError` naming the file, line and field and saying
what was expected. With `skip_bad` the reader counts the row and goes on instead.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equinox.errors import WorkloadError

logger = logging.getLogger(__name__)

# A request longer than this is certainly a corrupt value, not a real prompt.
MAX_TOKENS_PER_FIELD = 100_000_000
MAX_FIRST_ERRORS = 5


@dataclass(slots=True)
class RawRecord:
    """One request as a trace format read it, before tenants, ids and time rebasing."""

    line: int
    arrival_time: float | None
    num_prompt_tokens: int
    num_output_tokens: int
    tenant: str | None = None
    request_id: str | None = None
    max_tokens: int | None = None
    prompt_text: str | None = None
    prefix_hashes: tuple[int, ...] = ()
    tenant_weight: float | None = None


@dataclass
class LoadReport:
    """What happened while reading one file: rows read, rows skipped, warnings."""

    path: str
    skip_bad: bool = False
    num_rows: int = 0
    num_skipped: int = 0
    first_errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def reject(self, err: WorkloadError) -> None:
        """Raise `err`, or count it when bad rows are skipped."""
        if not self.skip_bad:
            raise err
        self.num_skipped += 1
        if len(self.first_errors) < MAX_FIRST_ERRORS:
            self.first_errors.append(str(err))

    def warn(self, message: str) -> None:
        """Record and log a warning about the file."""
        self.warnings.append(message)
        logger.warning("%s: %s", self.path, message)

    def finish(self) -> None:
        """Turn the skipped-row count into a warning (called once reading is done)."""
        if self.num_skipped:
            first = "; ".join(self.first_errors[:2])
            self.warn(f"skipped {self.num_skipped} bad row(s) (first: {first})")


def parse_count(
    value: Any, *, path: str, line: int, field: str, allow_zero: bool = False
) -> int:
    """A token count: a non-negative (or positive) integer; floats with no fraction pass."""
    lo = 0 if allow_zero else 1
    expected = f"an integer >= {lo}"
    if isinstance(value, bool):
        raise WorkloadError(f"expected {expected}, got {value!r}", path=path, line=line, field=field)
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise WorkloadError(f"expected {expected}, got {value!r}", path=path, line=line, field=field)
        n = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            n = int(text)
        except ValueError:
            try:
                x = float(text)
            except ValueError:
                x = math.nan
            if not math.isfinite(x) or x != int(x):
                shown = text if len(text) <= 40 else text[:40] + "..."
                raise WorkloadError(
                    f"expected {expected}, got {shown!r}", path=path, line=line, field=field
                ) from None
            n = int(x)
    else:
        raise WorkloadError(
            f"expected {expected}, got {type(value).__name__}", path=path, line=line, field=field
        )
    if n < lo:
        what = "negative length" if n < 0 else "zero length"
        raise WorkloadError(
            f"expected {expected}, got {n} ({what})", path=path, line=line, field=field
        )
    if n > MAX_TOKENS_PER_FIELD:
        raise WorkloadError(
            f"expected at most {MAX_TOKENS_PER_FIELD} tokens, got {n}", path=path, line=line, field=field
        )
    return n


def parse_count_fast(value: Any, *, path: str, line: int, field: str) -> int:
    """parse_count for the common case (a plain positive integer), falling back for errors."""
    try:
        n = int(value)
    except (ValueError, TypeError):
        return parse_count(value, path=path, line=line, field=field)
    if 0 < n <= MAX_TOKENS_PER_FIELD and not isinstance(value, (bool, float)):
        return n
    return parse_count(value, path=path, line=line, field=field)


def parse_seconds(value: Any, *, path: str, line: int, field: str, scale: float = 1.0) -> float:
    """A finite time value in the file's unit, returned in seconds (multiplied by `scale`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise WorkloadError(
            f"expected a number of seconds, got {type(value).__name__}", path=path, line=line, field=field
        )
    try:
        x = float(value)
    except (ValueError, OverflowError):
        shown = str(value)[:40]
        raise WorkloadError(
            f"expected a number, got {shown!r}", path=path, line=line, field=field
        ) from None
    x *= scale
    if not math.isfinite(x):
        raise WorkloadError(f"expected a finite time, got {value!r}", path=path, line=line, field=field)
    return x


def parse_tenant(value: Any, *, path: str, line: int, field: str) -> str:
    """A tenant name from a column: a non-empty string (surrounding blanks dropped), no control characters."""
    tenant = "" if value is None else str(value).strip()
    if not tenant:
        raise WorkloadError("expected a tenant name, got an empty value", path=path, line=line, field=field)
    problem = tenant_problem(tenant)
    if problem is not None:
        raise WorkloadError(problem, path=path, line=line, field=field)
    return tenant


def tenant_problem(name: str) -> str | None:
    """Why `name` cannot be a tenant name (empty, blank, control characters such as NUL), or None."""
    if not name.strip():
        return "tenant is empty" if not name else f"tenant {name!r} is blank"
    bad = sorted({c for c in name if unicodedata.category(c) == "Cc"})
    if bad:
        return f"tenant {name!r} contains control character(s) {', '.join(repr(c) for c in bad)}"
    return None


def parse_weight(value: Any, *, path: str, line: int, field: str) -> float:
    """A tenant weight: a finite number > 0."""
    x = parse_seconds(value, path=path, line=line, field=field)
    if not x > 0.0:
        raise WorkloadError(f"expected a weight > 0, got {value!r}", path=path, line=line, field=field)
    return x


def parse_hashes(value: Any, *, path: str, line: int, field: str) -> tuple[int, ...]:
    """Prefix-block hashes: a JSON list of integers or a space-separated string of them."""
    items: Any
    if value is None or value == "":
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list):
        raise WorkloadError(
            f"expected a list of integers, got {type(value).__name__}", path=path, line=line, field=field
        )
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise WorkloadError(f"expected integer hashes, got {item!r}", path=path, line=line, field=field)
        try:
            out.append(int(item))
        except ValueError:
            raise WorkloadError(
                f"expected integer hashes, got {str(item)[:40]!r}", path=path, line=line, field=field
            ) from None
    return tuple(out)


def iter_csv_rows(path: Path, *, skip_comments: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each row of a CSV file; corrupt files raise WorkloadError."""
    p = str(path)
    line = 0
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            source: Iterator[str] = fh
            if skip_comments:
                source = (ln if not ln.startswith("#") else "\n" for ln in fh)
            reader = csv.reader(source)
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                yield line, row
    except UnicodeDecodeError as exc:
        raise WorkloadError(
            f"not UTF-8 text near line {line + 1} ({exc.reason}); is this the right file?", path=p
        ) from None
    except csv.Error as exc:
        raise WorkloadError(f"malformed CSV near line {line + 1}: {exc}", path=p) from None
    except OSError as exc:
        raise WorkloadError(f"cannot read file: {exc.strerror or exc}", path=p) from None


def iter_jsonl_objects(
    path: Path, report: LoadReport
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank JSONL line; bad lines go through `report`."""
    p = str(path)
    line = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except (json.JSONDecodeError, RecursionError) as exc:
                    msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                    report.reject(WorkloadError(f"expected one JSON object per line ({msg})", path=p, line=line))
                    continue
                if not isinstance(obj, dict):
                    report.reject(
                        WorkloadError(f"expected a JSON object, got {type(obj).__name__}", path=p, line=line)
                    )
                    continue
                yield line, obj
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"not UTF-8 text near line {line + 1} ({exc.reason})", path=p) from None
    except OSError as exc:
        raise WorkloadError(f"cannot read file: {exc.strerror or exc}", path=p) from None


def read_head(path: Path, num_bytes: int = 4096) -> str:
    """The first bytes of a file as text (for format sniffing); undecodable bytes replaced."""
    try:
        with open(path, "rb") as fh:
            return fh.read(num_bytes).decode("utf-8", errors="replace")
    except OSError as exc:
        raise WorkloadError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from None


class Columns:
    """Header lookup: canonical field -> column index, with aliases and unknown-column warnings."""

    def __init__(
        self,
        header: list[str],
        *,
        path: str,
        required: Mapping[str, tuple[str, ...]],
        optional: Mapping[str, tuple[str, ...]] | None = None,
        report: LoadReport | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        names = [h.strip().lstrip("\ufeff") for h in header]
        lower = {n.lower(): i for i, n in enumerate(names)}
        self.width = len(names)
        self.index: dict[str, int] = {}
        used: set[int] = set()
        for key, aliases in {**required, **(optional or {})}.items():
            for alias in aliases:
                if alias.lower() in lower:
                    self.index[key] = lower[alias.lower()]
                    used.add(lower[alias.lower()])
                    break
            else:
                if key in required:
                    raise WorkloadError(
                        f"missing column (expected one of {', '.join(aliases)}); found: {', '.join(names)}",
                        path=path,
                        line=1,
                        field=aliases[0],
                    )
        for name in extra:
            if name.lower() in lower:
                self.index[name] = lower[name.lower()]
                used.add(lower[name.lower()])
        unknown = [n for i, n in enumerate(names) if i not in used]
        self.unknown = unknown
        if unknown and report is not None:
            report.warn(f"ignored unknown column(s): {', '.join(unknown)}")

    def get(self, row: list[str], key: str) -> str | None:
        """The row's value for `key`, or None when the column is absent."""
        i = self.index.get(key)
        if i is None or i >= len(row):
            return None
        return row[i]
