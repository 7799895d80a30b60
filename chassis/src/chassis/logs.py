"""Structured logs: one JSON object per line on stdout, the same for every source.

structlog renders our own events; stdlib logging (Flask, gunicorn, libraries) is routed
through the same processors by ``ProcessorFormatter``, so an operator's log query works
on every line. Each line carries the active request id and OpenTelemetry trace/span id,
and passes through :mod:`chassis.redaction` last so secrets never reach stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import orjson
import structlog
from gunicorn import glogging
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

from chassis.redaction import redact


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def add_service(service: str) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return redact(event_dict)


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """orjson's encoder for log lines: about a tenth of the stdlib encoder's cost per line.

    The output stays what the stdlib encoder wrote (ASCII, non-ASCII as ``\\u`` escapes,
    structlog's fallback for unknown objects), so a stdout that is not UTF-8 still takes
    every line: a line orjson cannot write as ASCII, or cannot represent at all (a
    non-string key, an integer past 64 bits), goes through the stdlib encoder instead.
    """
    try:
        line = orjson.dumps(obj, default=kwargs.get("default")).decode()
    except TypeError:
        return json.dumps(obj, **kwargs)
    return line if line.isascii() else json.dumps(obj, **kwargs)


def shared_processors(service: str) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_service(service),
        add_trace_context,
        structlog.stdlib.ExtraAdder(),
    ]


def _renderer(fmt: str) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=dumps_json)
    return structlog.dev.ConsoleRenderer(colors=False)


def make_formatter(service: str, fmt: str = "json") -> logging.Formatter:
    """The formatter for stdlib records; also named by gunicorn's ``logconfig_dict``."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(service),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            _renderer(fmt),
        ],
    )


class DirectLineLogger:
    """The line sink under the chassis' own per-request events: one write, no stdlib record.

    Sending the access line through stdlib logging costs every request a ``LogRecord``,
    structlog's ``findCaller`` walk and the handler chain, for a line whose fields are
    all known up front. This logger takes the rendered line and writes it to stdout
    under the stdout handler's lock, so it never interleaves with a library's line.
    The stdlib logger of the same name still decides the level, so ``LOG_LEVEL`` and
    any per-logger level apply as before.
    """

    def __init__(self, name: str, handler: logging.Handler) -> None:
        self.name = name
        self.stdlib = logging.getLogger(name)
        self.handler = handler

    def msg(self, line: str) -> None:
        self.handler.acquire()
        try:
            stream = sys.stdout
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # a failed log write must not fail the request
            return
        finally:
            self.handler.release()

    debug = info = warning = error = critical = exception = msg


def drop_below_level(
    logger: DirectLineLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """The stdlib level check, before any other processor runs."""
    if logger.stdlib.isEnabledFor(structlog.stdlib.NAME_TO_LEVEL[method_name]):
        return event_dict
    raise structlog.DropEvent


_direct_loggers: dict[str, Any] = {}
_direct_processors: list[Processor] | None = None
_direct_handler: logging.Handler | None = None


def direct_logger(name: str) -> Any:
    """A structlog logger whose lines skip stdlib logging (see :class:`DirectLineLogger`).

    Until :func:`configure_logging` has run this is an ordinary structlog logger.
    """
    logger = _direct_loggers.get(name)
    if logger is None:
        if _direct_processors is None or _direct_handler is None:
            return structlog.get_logger(name)
        logger = structlog.wrap_logger(
            DirectLineLogger(name, _direct_handler),
            processors=_direct_processors,
            wrapper_class=structlog.BoundLogger,
            cache_logger_on_first_use=True,
        )
        _direct_loggers[name] = logger
    return logger


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a line is emitted, not when configured."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _: Any) -> None:
        return


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and stdlib logging to one JSON stream on stdout (idempotent)."""
    structlog.configure(
        processors=[
            *shared_processors(service),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    global _direct_processors, _direct_handler  # noqa: PLW0603
    handler = StdoutHandler()
    handler.setFormatter(make_formatter(service, fmt))
    _direct_handler = handler
    _direct_processors = [
        drop_below_level,
        *shared_processors(service),
        structlog.processors.format_exc_info,
        redact_secrets,
        _renderer(fmt),
    ]
    _direct_loggers.clear()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("werkzeug", "urllib3", "botocore", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def gunicorn_logconfig(service: str, level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A ``logconfig_dict`` that makes gunicorn's own lines come out like ours."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "chassis.logs.make_formatter", "service": service, "fmt": fmt}
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


class GunicornLogger(glogging.Logger):
    """gunicorn's logger without gunicorn's access line.

    Each service writes its own access line, inside the request's trace
    (:mod:`chassis.requests_context`). gunicorn counts its access log as on whenever a
    ``logconfig_dict`` is set, and then builds the line's whole atom dictionary for every
    request before the silenced ``gunicorn.access`` logger drops it: about 4 % of a
    proxied request's worker CPU (bench/profiles/gateway.md).
    """

    @property
    def access_log_enabled(self) -> bool:
        return False

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
