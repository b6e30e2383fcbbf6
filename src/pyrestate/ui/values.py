"""How payloads and times are shown: bytes as pretty JSON, text or hex; UTC timestamps."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

MAX_SHOWN_CHARS = 20_000  # a value beyond this is cut on the page (it stays whole in storage)


@dataclass(frozen=True, slots=True)
class Shown:
    """A payload as the page shows it."""

    text: str
    kind: str  # "json", "text", "binary" or "empty"
    size: int  # bytes
    cut: bool = False


def show_bytes(raw: bytes) -> Shown:
    """JSON pretty-printed when it parses, else UTF-8 text, else hex."""
    if not raw:
        return Shown("", "empty", 0)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return _cut(raw.hex(), "binary", len(raw))
    try:
        value = json.loads(text)
    except ValueError:
        return _cut(text, "text", len(raw))
    return _cut(json.dumps(value, indent=2, ensure_ascii=False), "json", len(raw))


def _cut(text: str, kind: str, size: int) -> Shown:
    if len(text) <= MAX_SHOWN_CHARS:
        return Shown(text, kind, size)
    return Shown(text[:MAX_SHOWN_CHARS], kind, size, cut=True)


def bytes_of_hex(text: str | None) -> bytes:
    """A binary column of a JSON query answer (lowercase hex) as bytes."""
    return bytes.fromhex(text) if text else b""


def when(value: str | None) -> str:
    """An RFC 3339 timestamp of a query answer, shown as ``YYYY-MM-DD HH:MM:SS.mmm UTC``."""
    if not value:
        return ""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    text = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"{text} UTC"


def when_ms(ms: int) -> str:
    """Epoch milliseconds, shown as `when` shows a timestamp."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when(moment.isoformat())
