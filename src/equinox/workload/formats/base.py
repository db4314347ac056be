"""The trace-format seam: one small object per format, registered in TRACE_FORMATS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from equinox.workload.build import LoadOptions
from equinox.workload.parsing import LoadReport, RawRecord
from equinox.workload.schema import Workload

Reader = Callable[[Path, LoadOptions, LoadReport], Iterator[RawRecord]]
Sniffer = Callable[[Path, str], bool]
Loader = Callable[[Path, LoadOptions], Workload]


@dataclass(frozen=True)
class TraceFormat:
    """A trace format: how to recognise it, and either a row reader or a whole-file loader.

    Row formats give `read` (streaming records; the common pipeline sorts, clips and
    assigns tenants). Generative formats such as ServeGen statistics give `load` instead.
    """

    name: str
    description: str
    sniff: Sniffer
    read: Reader | None = None
    load: Loader | None = None
    source: str = ""
    rebase_time: bool = True  # shift times so the first request arrives at 0
