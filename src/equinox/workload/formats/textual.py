"""Traces that carry text: ShareGPT / Chatbot-Arena conversations (JSON) and vLLM prompt JSONL.

ShareGPT: a JSON array of {"id", "conversations": [{"from": "human", "value"}, {"from": "gpt", ...}]};
Chatbot-Arena style (VTC's real trace): {"conversation": [{"role", "content"}...], "model", "tstamp"}.
The first user turn is the prompt and the next assistant turn the output, as in vLLM's
benchmark. The array is parsed incrementally, so large files stream.

vLLM benchmark JSONL (`vllm bench serve --dataset-name custom`): {"prompt": text,
"output_tokens": n}; missing output_tokens defaults to 256 (vLLM's --custom-output-len).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from equinox.errors import WorkloadError
from equinox.workload.build import LoadOptions
from equinox.workload.formats.base import TraceFormat
from equinox.workload.parsing import LoadReport, RawRecord, iter_jsonl_objects, parse_count, parse_seconds, parse_tenant
from equinox.workload.tokens import make_token_counter

CHUNK = 1 << 20
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "chatgpt", "bard", "bing", "model"}
VLLM_DEFAULT_OUTPUT = 256


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of a top-level JSON array, reading in chunks."""
    p = str(path)
    dec = json.JSONDecoder()
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"cannot read file: {exc.strerror or exc}", path=p) from None
    with fh:
        buf, pos, line, eof, chunk = "", 0, 1, False, CHUNK

        def more() -> bool:
            nonlocal buf, pos, line, eof, chunk
            if eof:
                return False
            line += buf.count("\n", 0, pos)
            data = fh.read(chunk)
            chunk = min(chunk * 2, 64 * CHUNK)
            buf, pos = buf[pos:] + data, 0
            eof = not data
            return bool(data)

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not more():
                    return ""

        def here() -> int:
            return line + buf.count("\n", 0, pos)

        try:
            if skip_ws() != "[":
                raise WorkloadError("expected a JSON array of conversations", path=p, line=here())
            pos += 1
            if skip_ws() == "]":
                return
            while True:
                if not skip_ws():
                    raise WorkloadError("unexpected end of file inside the JSON array", path=p, line=here())
                start_line = here()
                while True:
                    try:
                        obj, end = dec.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as exc:
                        if not more():
                            raise WorkloadError(f"malformed JSON ({exc.msg})", path=p, line=start_line) from None
                pos = end
                yield start_line, obj
                c = skip_ws()
                if c == ",":
                    pos += 1
                elif c == "]":
                    return
                else:
                    raise WorkloadError(f"expected ',' or ']' in the JSON array, got {c[:1]!r}", path=p, line=here())
        except UnicodeDecodeError as exc:
            raise WorkloadError(f"not UTF-8 text ({exc.reason})", path=p) from None
        except RecursionError:
            raise WorkloadError("JSON nested too deeply", path=p, line=here()) from None


def _turns(obj: dict[str, Any], *, path: str, line: int) -> tuple[str, str] | None:
    conv = obj.get("conversations", obj.get("conversation"))
    if not isinstance(conv, list):
        raise WorkloadError("expected a list of turns", path=path, line=line, field="conversations")
    prompt = None
    for turn in conv:
        if not isinstance(turn, dict):
            raise WorkloadError("expected each turn to be an object", path=path, line=line, field="conversations")
        role = str(turn.get("from", turn.get("role", ""))).lower()
        text = turn.get("value", turn.get("content"))
        if not isinstance(text, str):
            raise WorkloadError("expected turn text as a string", path=path, line=line, field="value")
        if prompt is None and role in USER_ROLES:
            prompt = text
        elif prompt is not None and role in ASSISTANT_ROLES:
            return prompt, text
    return None


def _read_sharegpt(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
    p = str(path)
    count, how = make_token_counter(opts.tokenizer)
    if opts.tokenizer is None:
        report.warn(how)
    tcol = opts.tenant_column
    num_short = 0
    for line, obj in iter_json_array(path):
        try:
            if not isinstance(obj, dict):
                raise WorkloadError(f"expected a conversation object, got {type(obj).__name__}", path=p, line=line)
            pair = _turns(obj, path=p, line=line)
            if pair is None:
                num_short += 1
                continue
            t = obj.get("tstamp")
            tenant = parse_tenant(obj.get(tcol), path=p, line=line, field=tcol) if tcol else None
            rid = obj.get("id", obj.get("conversation_id"))
            yield RawRecord(
                line,
                None if t is None else parse_seconds(t, path=p, line=line, field="tstamp"),
                count(pair[0]),
                count(pair[1]),
                tenant=tenant,
                request_id=None if rid in (None, "") else str(rid),
            )
        except WorkloadError as exc:
            report.reject(exc)
    if num_short:
        report.warn(f"dropped {num_short} conversation(s) without a user turn followed by an answer")


def _read_vllm(path: Path, opts: LoadOptions, report: LoadReport) -> Iterator[RawRecord]:
    p = str(path)
    count, how = make_token_counter(opts.tokenizer)
    tcol = opts.tenant_column
    warned_estimate = warned_default = False
    for line, obj in iter_jsonl_objects(path, report):
        try:
            text = obj.get("prompt")
            n_in = obj.get("prompt_len", obj.get("input_len"))
            if n_in is not None:
                num_in = parse_count(n_in, path=p, line=line, field="prompt_len")
            elif isinstance(text, str) and text:
                num_in = count(text)
                if not warned_estimate and opts.tokenizer is None:
                    report.warn(how)
                    warned_estimate = True
            else:
                raise WorkloadError("expected a non-empty prompt string (or prompt_len)", path=p, line=line,
                                    field="prompt")
            out = obj.get("output_tokens", obj.get("output_len"))
            if out is None:
                out = VLLM_DEFAULT_OUTPUT
                if not warned_default:
                    report.warn(f"rows without output_tokens get {VLLM_DEFAULT_OUTPUT} (vLLM's default)")
                    warned_default = True
            tenant = parse_tenant(obj.get(tcol), path=p, line=line, field=tcol) if tcol else None
            at = obj.get("arrival_time")
            num_out = parse_count(out, path=p, line=line, field="output_tokens")
            yield RawRecord(
                line,
                None if at is None else parse_seconds(at, path=p, line=line, field="arrival_time"),
                num_in,
                num_out,
                tenant=tenant,
                max_tokens=num_out,
                prompt_text=text if isinstance(text, str) and text else None,
            )
        except WorkloadError as exc:
            report.reject(exc)


def _sniff_sharegpt(path: Path, head: str) -> bool:
    h = head.lstrip()
    return h.startswith("[") and ('"conversations"' in h or '"conversation"' in h or path.suffix == ".json")


def _sniff_vllm(path: Path, head: str) -> bool:
    h = head.lstrip()
    return h.startswith("{") and ('"prompt"' in h[:2000] or '"prompt_len"' in h[:2000]) and '"conversations"' not in h


SHAREGPT = TraceFormat(
    "sharegpt",
    "ShareGPT / Chatbot-Arena conversations JSON (first user turn -> prompt, next answer -> output)",
    _sniff_sharegpt,
    read=_read_sharegpt,
)
VLLM_BENCH = TraceFormat(
    "vllm-bench",
    "vLLM benchmark custom-dataset JSONL ({prompt, output_tokens}; also prompt_len, arrival_time)",
    _sniff_vllm,
    read=_read_vllm,
)
