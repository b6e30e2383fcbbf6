"""The server's logs: filter parsing and precedence, the three formats, the stdout/stderr
split, the lines of failed attempts and pauses, and what is never let through."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from pyrestate import logs
from pyrestate.cli.main import app
from pyrestate.core.effects import AttemptFailureHandled, Completed
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import Failure, Output, ServiceType, Target
from pyrestate.logs import OFF, TRACE, Levels, LogConfigError

WARN, INFO, DEBUG, ERROR = logging.WARNING, logging.INFO, logging.DEBUG, logging.ERROR

# --- the filter


def test_a_filter_sets_the_default_and_named_loggers() -> None:
    levels = Levels.parse("warn,pyrestate=info,pyrestate.invoker=debug")
    assert levels == Levels(WARN, (("pyrestate", INFO), ("pyrestate.invoker", DEBUG)))


def test_official_targets_stand_for_pyrestate_loggers() -> None:
    levels = Levels.parse(
        "error,restate=info,restate_invoker_impl=debug,restate_admin::rest_api=trace,"
        "restate_bifrost=debug,restate.server=debug"
    )
    assert levels.default == ERROR
    assert levels.loggers == (
        ("pyrestate", INFO),
        ("pyrestate.invoker", DEBUG),
        ("pyrestate.admin", TRACE),  # the crate's modules: the crate's logger
        # restate_bifrost has no counterpart: nothing; a dotted name is Python's (the SDK).
        ("restate.server", DEBUG),
    )


def test_filter_spelling() -> None:
    assert Levels.parse(" WARN , pyrestate = Debug ,, ") == Levels(WARN, (("pyrestate", DEBUG),))
    assert Levels.parse("warning").default == WARN
    assert Levels.parse("off").default == OFF
    # No bare level: what no directive names logs nothing (EnvFilter does the same).
    assert Levels.parse("pyrestate=info") == Levels(OFF, (("pyrestate", INFO),))
    # A bare target: every level of it.
    assert Levels.parse("pyrestate.query") == Levels(OFF, (("pyrestate.query", TRACE),))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("pyrestate=loud", "unknown log level 'loud'"),
        ("=info", "no target"),
        ("restate[invoke{id=1}]=debug", "span filters are not supported"),
    ],
)
def test_a_bad_filter_says_why(text: str, problem: str) -> None:
    with pytest.raises(LogConfigError, match=re.escape(problem)):
        Levels.parse(text)


def test_the_filter_comes_from_the_command_line_then_rust_log_then_restate_log_filter() -> None:
    both = {"RUST_LOG": "error", "RESTATE_LOG_FILTER": "debug"}
    assert logs.resolve_levels(None, None, both) == Levels(ERROR)
    assert logs.resolve_levels(None, None, {"RESTATE_LOG_FILTER": "debug"}) == Levels(DEBUG)
    assert logs.resolve_levels("trace", None, both) == Levels(TRACE)
    assert logs.resolve_levels(None, None, {"RUST_LOG": ""}) == Levels.parse(logs.DEFAULT_FILTER)
    assert logs.resolve_levels(None, None, {}) == Levels(WARN, (("pyrestate", INFO),))
    # --log-level: pyrestate's loggers, the others at warn, or quieter if it is.
    assert logs.resolve_levels(None, "debug", both) == Levels(WARN, (("pyrestate", DEBUG),))
    assert logs.resolve_levels(None, "error", {}) == Levels(ERROR, (("pyrestate", ERROR),))
    with pytest.raises(LogConfigError, match="not both"):
        logs.resolve_levels("info", "debug", {})
    with pytest.raises(LogConfigError, match=r"\(from RUST_LOG\)"):
        logs.resolve_levels(None, None, {"RUST_LOG": "x=y"})


def test_the_format_comes_from_the_command_line_then_the_environment() -> None:
    assert logs.resolve_format(None, {}) == "pretty"
    assert logs.resolve_format(None, {"RESTATE_LOG_FORMAT": "JSON"}) == "json"
    assert logs.resolve_format("compact", {"RESTATE_LOG_FORMAT": "json"}) == "compact"
    with pytest.raises(LogConfigError, match="want one of pretty, compact, json"):
        logs.resolve_format("fancy", {})


@pytest.fixture
def restore_levels() -> Iterator[None]:
    names = ["", "httpx", "pyrestate", "pyrestate.invoker"]
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_levels")
def test_applied_levels_follow_the_logger_tree() -> None:
    Levels.parse("info,pyrestate=warn,pyrestate.invoker=debug").apply()
    assert logging.getLogger("pyrestate.invoker.service").isEnabledFor(DEBUG)
    assert not logging.getLogger("pyrestate.admin").isEnabledFor(INFO)
    assert logging.getLogger("aiokafka").isEnabledFor(INFO)
    # A line per in-process request: httpx stays at warn unless named.
    assert not logging.getLogger("httpx").isEnabledFor(INFO)
    Levels.parse("off").apply()
    assert not logging.getLogger("httpx").isEnabledFor(ERROR)
    Levels.parse("warn,httpx=info").apply()
    assert logging.getLogger("httpx").isEnabledFor(INFO)


@pytest.mark.parametrize(
    "args",
    [["--log-format", "fancy"], ["--log-filter", "pyrestate=loud"], ["--log-level", "loud"]],
)
def test_the_server_refuses_bad_log_options_before_starting(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["server", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


# --- the formats


class Logged:
    """A logger wired to the handlers of one format, with what each stream received."""

    def __init__(self, fmt: str) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.logger = logging.getLogger(f"pyrestate.test_logs.{fmt}")
        self.logger.propagate = False
        self.logger.setLevel(TRACE)
        self.logger.handlers = logs.handlers(fmt, self.out, self.err)

    def lines(self) -> tuple[list[str], list[str]]:
        return self.out.getvalue().splitlines(), self.err.getvalue().splitlines()


FIELDS = {"restate.invocation.id": "inv_1", "error": "[500 Internal] boom\nTraceback: x", "n": 2}


def test_pretty_is_one_line_with_fields_in_the_harness_layout() -> None:
    logged = Logged("pretty")
    logged.logger.info("Deployment %s", "registered", extra={"fields": FIELDS})
    (line,), [] = logged.lines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pyrestate\.test_logs\.pretty: "
        r'Deployment registered restate\.invocation\.id=inv_1 error="\[500 Internal\] '
        r'boom\\nTraceback: x" n=2',
        line,
    ), line


def test_pretty_prints_a_traceback_after_its_record() -> None:
    logged = Logged("pretty")
    try:
        raise ValueError("broken")
    except ValueError:
        logged.logger.exception("it failed")
    [], err = logged.lines()
    assert err[0].endswith(" ERROR pyrestate.test_logs.pretty: it failed")
    assert err[1] == "Traceback (most recent call last):"
    assert err[-1] == "ValueError: broken"


def test_compact_is_the_official_line() -> None:
    logged = Logged("compact")
    logged.logger.warning("Invocation error, retrying in 5ms.", extra={"fields": FIELDS})
    logged.logger.info("plain")
    out, (warning,) = logged.lines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  WARN pyrestate\.test_logs\.compact: "
        r"Invocation error, retrying in 5ms\. restate\.invocation\.id=inv_1 "
        r'error="\[500 Internal\] boom\\nTraceback: x" n=2',
        warning,
    ), warning
    assert out[0].endswith("Z  INFO pyrestate.test_logs.compact: plain")


def test_json_is_the_official_shape_one_object_per_line() -> None:
    logged = Logged("json")
    logged.logger.warning("retrying in %s.", "5ms", extra={"fields": FIELDS})
    try:
        raise ValueError("broken")
    except ValueError:
        logged.logger.critical("it failed", exc_info=True)
    logged.logger.log(TRACE, "fine detail")
    out, err = logged.lines()
    warning, critical = (json.loads(line) for line in err)
    assert list(warning) == ["timestamp", "level", "fields", "target"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", warning["timestamp"])
    assert warning["level"] == "WARN"
    assert warning["target"] == "pyrestate.test_logs.json"
    assert warning["fields"] == {"message": "retrying in 5ms.", **FIELDS}
    assert next(iter(warning["fields"])) == "message"
    # The traceback is a field; CRITICAL is ERROR, the highest official level.
    assert critical["level"] == "ERROR"
    assert critical["fields"]["exception"].endswith("ValueError: broken")
    (trace,) = (json.loads(line) for line in out)
    assert trace["level"] == "TRACE"


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_warn_and_above_go_to_stderr_the_rest_to_stdout(fmt: str) -> None:
    logged = Logged(fmt)
    for level in (TRACE, DEBUG, INFO, WARN, ERROR, logging.CRITICAL):
        logged.logger.log(level, "at %d", level)
    out, err = logged.lines()
    assert [re.findall(r"at (\d+)", line) for line in out] == [["5"], ["10"], ["20"]]
    assert [re.findall(r"at (\d+)", line) for line in err] == [["30"], ["40"], ["50"]]


@pytest.mark.parametrize("name", ["hpack", "hpack.hpack", "hpack.table", "uvicorn.asgi"])
def test_loggers_that_print_header_values_never_get_through(name: str) -> None:
    # hpack logs every header it encodes at DEBUG, authorization values included.
    logged = Logged("pretty")
    dumper = logging.getLogger(name)
    saved = dumper.level, dumper.propagate, dumper.handlers
    dumper.setLevel(TRACE)
    dumper.propagate = False
    dumper.handlers = logged.logger.handlers
    try:
        dumper.debug("Adding %s to the header table", (b"authorization", b"Bearer s3cret"))
        dumper.log(TRACE, "ASGI [1] Started scope=%s", {"headers": [(b"x-api-key", b"k3y")]})
        dumper.warning("a warning of theirs still shows")
    finally:
        dumper.level, dumper.propagate, dumper.handlers = saved
    out, err = logged.lines()
    assert out == []
    assert len(err) == 1


# --- values


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (215, "215ms"),
        (3000, "3s"),
        (61_005, "1m 1s 5ms"),
        (90_061_001, "1d 1h 1m 1s 1ms"),
    ],
)
def test_durations_read_as_the_official_prints_them(ms: int, text: str) -> None:
    assert logs.humantime(ms) == text


def test_uris_lose_their_credentials() -> None:
    assert logs.redact_uri("http://user:tok@h:9080/p") == "http://***@h:9080/p"
    assert logs.redact_uri("https://tok@h/") == "https://***@h/"
    assert logs.redact_uri("http://127.0.0.1:9080/") == "http://127.0.0.1:9080/"
    assert logs.redact_uri("asgi://examples.demo/app") == "asgi://examples.demo/app"


# --- failed attempts and pauses

INV = InvocationId(7, bytes(range(16)))
TARGET = Target("Pauser", "alwaysFails", None, ServiceType.SERVICE, None)
NOW = 1_000_000


def _handled(retry_at: int | None, code: int = 500, dep: str = "dp_1") -> AttemptFailureHandled:
    return AttemptFailureHandled(INV, TARGET, dep, Failure(code, "RuntimeError('x')"), retry_at)


def test_a_retried_attempt_logs_the_official_warning(caplog: pytest.LogCaptureFixture) -> None:
    observe = logs.AttemptFailureLog(lambda: NOW)
    with caplog.at_level(WARN, "pyrestate.invoker"):
        observe([Completed(INV, Output(value=b"")), _handled(NOW + 215)])
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("pyrestate.invoker", WARN)
    assert record.getMessage() == "Invocation error, retrying in 215ms."
    assert record.fields == {  # type: ignore[attr-defined]
        "error": "[500 Internal] RuntimeError('x')",
        "restate.error.code": "RT0007",
        "restate.invocation.id": str(INV),
        "restate.invocation.target": "Pauser/alwaysFails",
        "restate.deployment.id": "dp_1",
    }


def test_a_pause_logs_the_official_warning(caplog: pytest.LogCaptureFixture) -> None:
    observe = logs.AttemptFailureLog(lambda: NOW)
    with caplog.at_level(WARN, "pyrestate.invoker"):
        observe([_handled(None, code=571, dep="")])
    (record,) = caplog.records
    assert record.getMessage() == "Error when executing the invocation, pausing the invocation."
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["restate.error.code"] == "RT0012"
    assert fields["error"] == "[571 Protocol violation] RuntimeError('x')"
    assert "restate.deployment.id" not in fields  # none was picked
