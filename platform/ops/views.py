from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from .health import health_report


def shows_health_details(request) -> bool:
    """Host names, versions and error texts help an attacker: staff only (or everybody where
    the operator keeps /healthz on a private network: HEALTHZ_PUBLIC_DETAILS=1)."""
    user = getattr(request, "user", None)
    return bool(settings.HEALTHZ_PUBLIC_DETAILS or (user is not None and user.is_staff))


@never_cache
def healthz(request):
    """/healthz: database, broker and live workers; /healthz?scope=web: database and broker.
    Everybody gets the status code and {"ok": ...}; staff get the details."""
    ok, report = health_report(workers=request.GET.get("scope") != "web")
    body = {"ok": ok, **report} if shows_health_details(request) else {"ok": ok}
    return JsonResponse(body, status=200 if ok else 503)
