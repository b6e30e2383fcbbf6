"""Values printed the way the official server (written in Rust) prints them."""

from __future__ import annotations

from datetime import UTC, datetime

_DURATION_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def format_duration(ms: int) -> str:
    """The "friendly" compact form with days as the largest unit, e.g. ``1d 12h``."""
    parts = []
    for unit, size in _DURATION_UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


def format_timestamp(ms: int) -> str:
    """RFC 3339 with nanoseconds, as the official server prints ``created_at``."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis * 1_000_000:09d}Z"


_DEBUG_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def rust_debug_str(s: str) -> str:
    """A string as Rust's ``{:?}`` prints it: quoted, with escapes."""
    escaped = "".join(
        _DEBUG_ESCAPES.get(ch) or (f"\\u{{{ord(ch):x}}}" if ord(ch) < 0x20 or ch == "\x7f" else ch)
        for ch in s
    )
    return f'"{escaped}"'


# The official server names its error codes ("[500 Internal] ...", "409 Aborted"); 409
# reads "Aborted", the first of its two names there.
ERROR_CODE_NAMES = {
    400: "Bad request",
    404: "Not found",
    409: "Aborted",
    410: "Gone",
    415: "Unsupported media type",
    470: "Not ready",
    500: "Internal",
    570: "Journal mismatch",
    571: "Protocol violation",
    572: "Awaiting two async results",
    573: "Unsupported feature",
}


def error_code_label(code: int) -> str:
    """``409 Aborted``: a failure's code as the official server names it."""
    name = ERROR_CODE_NAMES.get(code)
    return f"{code} {name}" if name else str(code)


# The official documentation code of an attempt's failure: RT0016 a journal mismatch,
# RT0012 a protocol violation, RT0007 any other error the handler reported.
DOC_CODES = {570: "RT0016", 571: "RT0012"}
OTHER_DOC_CODE = "RT0007"
