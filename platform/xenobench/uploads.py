"""Request-body limits enforced before and while the body streams in.

Django spools a multipart body (to memory, then to a temporary file) as soon as anything reads
``request.POST`` or ``request.FILES`` - CsrfViewMiddleware does so before the view runs. So the
limit is installed by a middleware placed before it:

1. a declared Content-Length above the cap (plus ``UPLOAD_FORM_OVERHEAD_BYTES`` for boundaries and
   small fields) is answered with 413 before a byte of the body is read;
2. otherwise ``CappedUploadHandler`` (first in the handler chain) counts file bytes as they
   arrive and stops the parser once the cap is passed, so no handler after it ever receives
   more than the cap plus one chunk. Django never reads past Content-Length, so a client that
   declares less than it sends gets its body truncated, not spooled.

The cap is ``MAX_UPLOAD_MB``, lowered per view with ``@upload_limit`` (a phase's
``max_upload_mb``)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

MB = 2**20
BODY_METHODS = {"POST", "PUT", "PATCH"}
LimitFn = Callable[..., "int | None"]


def global_cap_bytes() -> int:
    return int(settings.MAX_UPLOAD_MB) * MB


def upload_limit(limit_mb: LimitFn):
    """Mark a view (or a DRF action) with a function ``(request, **view_kwargs) -> MB | None``
    giving its upload cap; None keeps the global MAX_UPLOAD_MB. Put it outermost."""

    def mark(view):
        view.upload_limit_mb = limit_mb
        return view

    return mark


def _limit_fn(view_func) -> LimitFn | None:
    fn = getattr(view_func, "upload_limit_mb", None)
    if fn is not None:
        return fn
    # DRF: as_view() returns a function carrying the viewset class and its method -> action map.
    cls, actions = getattr(view_func, "cls", None), getattr(view_func, "actions", None)
    if cls is not None and actions:
        return _action_limit(cls, actions)
    return None


def _action_limit(cls, actions: dict) -> LimitFn | None:
    def for_request(request, **kwargs):
        method = getattr(cls, actions.get(request.method.lower(), ""), None)
        fn = getattr(method, "upload_limit_mb", None)
        return fn(request, **kwargs) if fn else None

    return for_request


def cap_message(cap_bytes: int, declared: int | None = None, scope: str = "the site's") -> str:
    size = f" ({declared / MB:.1f} MB)" if declared else ""
    return (
        f"The upload{size} is larger than {scope} limit of {cap_bytes // MB} MB. "
        "Nothing was stored and nothing was counted against your quota; "
        "make the file smaller (e.g. fp16 weights) or ask the organizers."
    )


def too_large_response(request: HttpRequest, message: str) -> HttpResponse:
    wants_json = request.path.startswith("/api/") or "json" in request.headers.get("Accept", "")
    if wants_json:
        return JsonResponse({"detail": message}, status=413)
    html = render_to_string("413.html", {"message": message}, request=request)
    return HttpResponse(html, status=413)


class CappedUploadHandler(FileUploadHandler):
    """Counts file bytes while they stream; past the cap, stops the parser without reading on
    (``connection_reset``) and marks the request so the view answers 413."""

    def __init__(self, request: HttpRequest, cap_bytes: int):
        super().__init__(request)
        self.cap_bytes = cap_bytes
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.received += len(raw_data)
        if self.received > self.cap_bytes:
            self._stop()
        return raw_data  # handed on to the next handler (memory or temporary file)

    def file_complete(self, file_size: int):
        return None  # the next handler builds the file object

    def _stop(self):
        self.request.upload_too_large = True
        raise StopUpload(connection_reset=True)


def upload_refused(request: HttpRequest) -> str | None:
    """The 413 message when the body was cut off at the cap (call after reading FILES)."""
    if getattr(request, "upload_too_large", False):
        return cap_message(
            getattr(request, "upload_cap_bytes", global_cap_bytes()),
            scope=getattr(request, "upload_cap_scope", "the site's"),
        )
    return None


def install_cap(
    request: HttpRequest, cap_bytes: int, scope: str = "the site's"
) -> HttpResponse | None:
    """Refuse a declared oversize body now; otherwise cap the body while it streams. `scope`
    names whose limit it is in the message ("this phase's")."""
    request.upload_cap_bytes, request.upload_cap_scope = cap_bytes, scope
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > cap_bytes + settings.UPLOAD_FORM_OVERHEAD_BYTES:
        return too_large_response(request, cap_message(cap_bytes, declared, scope))
    if not any(isinstance(h, CappedUploadHandler) for h in request.upload_handlers):
        request.upload_handlers.insert(0, CappedUploadHandler(request, cap_bytes))
    return None


class UploadLimitMiddleware:
    """Installs the cap of the resolved view before anything reads the body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method not in BODY_METHODS:
            return None
        cap, scope = global_cap_bytes(), "the site's"
        fn = _limit_fn(view_func)
        if fn is not None:
            mb = fn(request, **view_kwargs)
            if mb is not None and int(mb) * MB < cap:
                cap, scope = int(mb) * MB, "this phase's"
        return install_cap(request, cap, scope)
