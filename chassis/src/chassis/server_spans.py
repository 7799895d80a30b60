"""One SERVER span per request, with the sampler asked before anything is built.

OpenTelemetry's Flask instrumentation pays for every request whether its span is kept
or not: it collects every request attribute twice, reads the captured-headers variables
from the environment and computes ``request.url`` for its excluded-URL check before the
sampler decides. With head sampling at 10 % most of that work is thrown away. This
middleware does the opposite: it extracts the caller's context, starts the span (which
is where the sampler decides) with the two attributes a sampler may look at, and builds
the rest only for a span that records.

The span covers the whole response: it is current while the app runs and while a
streamed body is produced, and ends when the server closes the body (PEP 3333 requires
the server to call ``close``), so a stream's span lasts as long as the stream.

Attributes follow the stable HTTP conventions (``http.request.method``, ``url.path``,
``http.route``, ``http.response.status_code``) and, for queries written against the
older ones, also ``http.method``, ``http.target`` and ``http.status_code``: the pair
``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup`` would give. Span names are the instrumentation's:
``"GET /v1/uploads/<upload_id>"`` for a matched route, ``"GET /the/path"`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

from flask import Flask, request
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_SPAN_KEY = "chassis.server_span"
_RECORDED_KEY = "chassis.server_span.exception_recorded"
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class _EnvironGetter(Getter[Environ]):
    """Reads propagation headers (``traceparent``, ``tracestate``, ``baggage``) from an environ."""

    def get(self, carrier: Environ, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if value is not None else None

    def keys(self, carrier: Environ) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


_getter = _EnvironGetter()


def _method(environ: Environ) -> str:
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    return method if method in _KNOWN_METHODS else "_OTHER"


def _request_attributes(environ: Environ, method: str, path: str) -> dict[str, Any]:
    """What a recording span says about the request; built only once it is known to record."""
    query = environ.get("QUERY_STRING")
    target = f"{path}?{query}" if query else path
    attributes: dict[str, Any] = {
        "http.method": method,
        "http.target": target,
        "url.scheme": environ.get("wsgi.url_scheme", "http"),
    }
    if query:
        attributes["url.query"] = query
    if method == "_OTHER":
        attributes["http.request.method_original"] = environ.get("REQUEST_METHOD", "")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
    if host:
        attributes["server.address"] = host.rsplit(":", 1)[0] if ":" in host else host
    user_agent = environ.get("HTTP_USER_AGENT")
    if user_agent:
        attributes["user_agent.original"] = user_agent
    peer = environ.get("REMOTE_ADDR")
    if peer:
        attributes["client.address"] = peer
    protocol = environ.get("SERVER_PROTOCOL", "")
    if protocol.startswith("HTTP/"):
        attributes["network.protocol.version"] = protocol[5:]
    return attributes


def _record_status(span: Span, status: str) -> None:
    try:
        code = int(status.split(" ", 1)[0])
    except ValueError:
        return
    span.set_attribute("http.response.status_code", code)
    span.set_attribute("http.status_code", code)
    if code >= 500:
        # Server spans are errors for 5xx only: a 4xx is the caller's mistake.
        span.set_status(Status(StatusCode.ERROR))


def _record_exception(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class _SpanBody:
    """The app's body, iterated with the span current and the span ended on ``close``."""

    def __init__(self, body: Iterable[bytes], span: Span, span_context: context.Context) -> None:
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._span = span
        self._context = span_context

    def __iter__(self) -> _SpanBody:
        return self

    def __next__(self) -> bytes:
        token = context.attach(self._context)
        try:
            if self._chunks is None:
                self._chunks = iter(self._body)
            return next(self._chunks)
        except StopIteration:
            raise
        except BaseException as error:
            if self._span.is_recording():
                _record_exception(self._span, error)
            raise
        finally:
            context.detach(token)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                token = context.attach(self._context)
                try:
                    close()
                finally:
                    context.detach(token)
        finally:
            self._span.end()


class ServerSpans:
    """WSGI middleware: the request's SERVER span, from the sampler's decision to the body's end."""

    def __init__(
        self,
        app: WsgiApp,
        tracer: trace.Tracer,
        excluded_paths: Collection[str] = frozenset(),
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.excluded_paths = frozenset(excluded_paths)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in self.excluded_paths:
            return self.app(environ, start_response)
        method = _method(environ)
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent = propagate.extract(environ, getter=_getter)
            kind = SpanKind.SERVER
        else:
            # Called inside a span already (an app mounted in another, a test's client
            # span): that span is the parent, as OpenTelemetry's own instrumentation does.
            parent = context.get_current()
            kind = SpanKind.INTERNAL
        span = self.tracer.start_span(
            f"{'HTTP' if method == '_OTHER' else method} {path}",
            context=parent,
            kind=kind,
            attributes={"http.request.method": method, "url.path": path},
        )
        recording = span.is_recording()
        if recording:
            span.set_attributes(_request_attributes(environ, method, path))
        environ[_SPAN_KEY] = span
        span_context = trace.set_span_in_context(span, parent)

        def spanned_start_response(status: str, headers: Any, *args: Any) -> Any:
            if recording:
                _record_status(span, status)
            return start_response(status, headers, *args)

        token = context.attach(span_context)
        try:
            body = self.app(environ, spanned_start_response)
        except BaseException as error:
            if recording and not environ.get(_RECORDED_KEY):
                _record_exception(span, error)
            span.end()
            raise
        finally:
            context.detach(token)
        return _SpanBody(body, span, span_context)


def _name_by_route() -> None:
    """Once Flask has matched the route: the span's name and ``http.route`` are the template."""
    span = request.environ.get(_SPAN_KEY)
    if span is None or not span.is_recording():
        return
    rule = request.url_rule
    if rule is not None:
        method = _method(request.environ)
        span.update_name(f"{'HTTP' if method == '_OTHER' else method} {rule.rule}")
        span.set_attribute("http.route", rule.rule)


def _record_unhandled(error: BaseException | None) -> None:
    """Flask turns an unhandled exception into a 500 and hands it to teardown only."""
    if error is None:
        return
    span = request.environ.get(_SPAN_KEY)
    if span is not None and span.is_recording():
        _record_exception(span, error)
        request.environ[_RECORDED_KEY] = True


def install_server_spans(
    app: Flask,
    excluded_paths: Collection[str] = frozenset(),
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Wrap ``app.wsgi_app`` so every request but ``excluded_paths`` has a SERVER span."""
    tracer = trace.get_tracer("chassis.server_spans", tracer_provider=tracer_provider)
    app.wsgi_app = ServerSpans(app.wsgi_app, tracer, excluded_paths)  # type: ignore[method-assign]
    app.before_request_funcs.setdefault(None, []).insert(0, _name_by_route)
    app.teardown_request(_record_unhandled)
