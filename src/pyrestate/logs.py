"""The server's logs: formats, filter, and the lines of notable events.

Formats (``--log-format``, env ``RESTATE_LOG_FORMAT``; the official server's names):

* ``pretty`` (default): ``2026-11-28 19:13:30,865 WARNING pyrestate.invoker: message
  key=value ...``. The official ``pretty`` spreads a record over several lines (message,
  then one field per line); pyrestate keeps one line per record instead, because that is
  what ``grep``, ``tail -f`` and line-oriented collectors handle, and its layout is the one
  pyrestate always had (the end-to-end harness tells the server's records from the SDK's
  by it). Tracebacks follow their record on the next lines, as Python prints them.
* ``compact``: the official compact line, ``<RFC 3339 UTC µs>Z  WARN <target>: message
  key=value ...``, with the official level names.
* ``json``: one object per line in the official shape, ``{"timestamp", "level",
  "fields": {"message", ...}, "target"}``; the target is the logger's name.

Structured fields travel in ``extra={"fields": {...}}`` and every format renders them;
values are quoted and escaped where needed, so a field never breaks its line.

The filter (``--log-filter``, env ``RUST_LOG`` over ``RESTATE_LOG_FILTER``, as the
official; default ``warn,restate=info``) is EnvFilter text: comma-separated ``level``
(every logger not named) and ``target=level`` (a logger and its children; a bare target
means every level). Targets are Python logger names; ``restate`` and the official crates
(``restate_invoker_impl``...) stand for the pyrestate loggers doing that work, so official
filters carry over. ``--log-level LEVEL`` is short for ``warn,pyrestate=LEVEL``.

WARN and above go to stderr and the rest to stdout, as the official server does.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from pyrestate.core.effects import AttemptFailureHandled, Effect
from pyrestate.official_format import DOC_CODES, OTHER_DOC_CODE, error_code_label

FORMATS = ("pretty", "compact", "json")
DEFAULT_FORMAT = "pretty"
DEFAULT_FILTER = "warn,restate=info"  # the official default
FORMAT_ENV = "RESTATE_LOG_FORMAT"
# In order of precedence (after the command line), as the official reads them.
FILTER_ENVS = ("RUST_LOG", "RESTATE_LOG_FILTER")

TRACE = 5  # below DEBUG: what EnvFilter's "trace" enables (uvicorn logs at this level)
OFF = logging.CRITICAL + 1

_LEVELS = {
    "off": OFF,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,  # Python's name, which --log-level always took
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

# The official crates' targets and the pyrestate loggers that do their work; an official
# crate missing here has no counterpart, and a directive for it changes nothing.
_CRATES = {
    "restate": "pyrestate",
    "restate_server": "pyrestate.server",
    "restate_admin": "pyrestate.admin",
    "restate_ingress_http": "pyrestate.ingress",
    "restate_ingress_kafka": "pyrestate.subscriptions",
    "restate_invoker_impl": "pyrestate.invoker",
    "restate_worker": "pyrestate.partition",
    "restate_partition_store": "pyrestate.storage",
    "restate_storage_query_datafusion": "pyrestate.query",
    "restate_storage_query_postgres": "pyrestate.pgsql",
    "restate_tracing_instrumentation": "pyrestate.telemetry",
}

# httpx logs a line per request of the in-process transport at INFO: at WARN at least,
# unless a directive names it.
_QUIET = ("httpx",)

# Libraries that print request headers, values included, below INFO: hpack every header
# it encodes (the invoker's HTTP/2 requests carry the deployments' additional headers
# and the identity token), uvicorn's ASGI message log every scope. Never let them
# through, whatever the filter says: those values are credentials.
_HEADER_DUMPERS = ("hpack", "uvicorn.asgi")


class LogConfigError(ValueError):
    """A log format or filter that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Levels:
    """A parsed filter: the level of every logger no directive names, and the named ones."""

    default: int
    loggers: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Levels:
        """EnvFilter text. Like EnvFilter, loggers no directive covers log nothing unless
        a bare level is given."""
        default = OFF
        loggers: list[tuple[str, int]] = []
        for part in text.split(","):
            directive = part.strip()
            if not directive:
                continue
            if "[" in directive or "{" in directive:
                raise LogConfigError(f"span filters are not supported: {directive!r}")
            target, sep, level_name = directive.partition("=")
            target = target.strip()
            if not sep and target.lower() in _LEVELS:
                default = _LEVELS[target.lower()]
                continue
            if not target:
                raise LogConfigError(f"no target before '=' in {directive!r}")
            level = _level(level_name) if sep else TRACE
            name = _logger_name(target)
            if name is not None:
                loggers.append((name, level))
        return cls(default, tuple(loggers))

    @classmethod
    def of_level(cls, level_name: str) -> Levels:
        """``--log-level``: pyrestate's loggers at that level, the others at WARN (or at
        that level, when it is quieter)."""
        level = _level(level_name)
        return cls(max(logging.WARNING, level), (("pyrestate", level),))

    def apply(self) -> None:
        logging.getLogger().setLevel(self.default)
        for name in _QUIET:
            logging.getLogger(name).setLevel(max(self.default, logging.WARNING))
        for name, level in self.loggers:
            logging.getLogger(name).setLevel(level)


def _level(name: str) -> int:
    try:
        return _LEVELS[name.strip().lower()]
    except KeyError:
        raise LogConfigError(
            f"unknown log level {name.strip()!r}: want one of off, error, warn, info, debug, trace"
        ) from None


def _logger_name(target: str) -> str | None:
    crate = target.split("::", 1)[0]
    if crate == "restate" or crate.startswith("restate_"):
        return _CRATES.get(crate)
    return target


def resolve_format(cli: str | None, env: Mapping[str, str]) -> str:
    value = (cli or env.get(FORMAT_ENV) or DEFAULT_FORMAT).strip().lower()
    if value not in FORMATS:
        raise LogConfigError(f"unknown log format {value!r}: want one of {', '.join(FORMATS)}")
    return value


def resolve_levels(cli_filter: str | None, cli_level: str | None, env: Mapping[str, str]) -> Levels:
    """The command line first, then ``RUST_LOG``, ``RESTATE_LOG_FILTER``, the default."""
    if cli_filter and cli_level:
        raise LogConfigError("give --log-filter or --log-level, not both")
    if cli_level:
        return Levels.of_level(cli_level)
    if cli_filter:
        source, text = "--log-filter", cli_filter
    else:
        given = ((name, env[name]) for name in FILTER_ENVS if env.get(name))
        source, text = next(given, ("the default", DEFAULT_FILTER))
    try:
        return Levels.parse(text)
    except LogConfigError as e:
        raise LogConfigError(f"log filter {text!r} (from {source}): {e}") from None


def setup(
    log_format: str | None,
    log_filter: str | None,
    log_level: str | None,
    env: Mapping[str, str],
) -> None:
    """Configure the process's logging from the command line's options and ``env``;
    LogConfigError before anything changed if they cannot be used."""
    fmt = resolve_format(log_format, env)
    levels = resolve_levels(log_filter, log_level, env)
    logging.addLevelName(TRACE, "TRACE")
    root = logging.getLogger()
    for handler in handlers(fmt, sys.stdout, sys.stderr):
        root.addHandler(handler)
    levels.apply()
    # Python's warnings as records too, so that every line has the chosen format.
    logging.captureWarnings(True)


def handlers(fmt: str, stdout: IO[str], stderr: IO[str]) -> list[logging.Handler]:
    """WARN and above to ``stderr``, the rest to ``stdout``, in format ``fmt``."""
    formatter = _FORMATTERS[fmt]()
    out = logging.StreamHandler(stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(formatter)
        handler.addFilter(_no_header_dumps)
    return [out, err]


_DUMPER_PREFIXES = tuple(f"{name}." for name in _HEADER_DUMPERS)


def _no_header_dumps(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO or not (
        record.name in _HEADER_DUMPERS or record.name.startswith(_DUMPER_PREFIXES)
    )


# --- formats


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    return getattr(record, "fields", None) or {}


def _problem(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, str]:
    """A record's traceback and stack as fields, which keeps them on its line."""
    problem = {}
    if record.exc_info:
        problem["exception"] = formatter.formatException(record.exc_info)
    if record.stack_info:
        problem["stack"] = formatter.formatStack(record.stack_info)
    return problem


def _official_level(levelno: int) -> str:
    # The five of `tracing`; Python's CRITICAL is an ERROR there.
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG" if levelno >= logging.DEBUG else "TRACE"


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _key_values(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value: Any) -> str:
    if isinstance(value, str):
        plain = bool(value) and value.isprintable() and not any(c in value for c in ' "=\\')
        return value if plain else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _Pretty(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _fields(record)
        return f"{line} {_key_values(fields)}" if fields else line


class _Compact(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record)} {_official_level(record.levelno):>5} {record.name}: "
            f"{record.getMessage()}"
        )
        fields = {**_fields(record), **_problem(self, record)}
        return f"{line} {_key_values(fields)}" if fields else line


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {"message": record.getMessage(), **_fields(record), **_problem(self, record)}
        document = {
            "timestamp": _timestamp(record),
            "level": _official_level(record.levelno),
            "fields": fields,
            "target": record.name,
        }
        return json.dumps(document, separators=(",", ":"), default=str)


_FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    "pretty": _Pretty,
    "compact": _Compact,
    "json": _Json,
}


# --- values


def humantime(ms: int) -> str:
    """A duration the way the official server's logs print one (``1m 3s 250ms``)."""
    if ms <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return " ".join(parts)


def redact_uri(uri: str) -> str:
    """``uri`` without the credentials it may carry (``http://user:token@host``)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


# --- notable events

_invoker_log = logging.getLogger("pyrestate.invoker")


class AttemptFailureLog:
    """A partition observer: a WARN line per failed attempt once what follows is committed,
    a retry (``Invocation error, retrying in 215ms.``) or a pause, in the official words.

    ``clock``: epoch ms, the partition's, which the retry time was computed with.
    """

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock

    def __call__(self, effects: Iterable[Effect]) -> None:
        if not _invoker_log.isEnabledFor(logging.WARNING):
            return
        for effect in effects:
            if type(effect) is AttemptFailureHandled:
                self._log(effect)

    def _log(self, handled: AttemptFailureHandled) -> None:
        failure = handled.failure
        label = error_code_label(failure.code)
        # The official's order; the error is the handler's own text (with the SDK's
        # stacktrace after it), logged as sent, as the official does.
        fields = {
            "error": f"[{label}] {failure.message}",
            "restate.error.code": DOC_CODES.get(failure.code, OTHER_DOC_CODE),
            "restate.invocation.id": str(handled.invocation_id),
            "restate.invocation.target": str(handled.target),
        }
        if handled.deployment_id:  # none when the attempt failed before one was picked
            fields["restate.deployment.id"] = handled.deployment_id
        if handled.retry_at is None:
            _invoker_log.warning(
                "Error when executing the invocation, pausing the invocation.",
                extra={"fields": fields},
            )
        else:
            _invoker_log.warning(
                "Invocation error, retrying in %s.",
                humantime(handled.retry_at - self._clock()),
                extra={"fields": fields},
            )
