from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from .health import health_report


@never_cache
def healthz(request):
    """/healthz: database, broker and live workers; /healthz?scope=web: database and broker."""
    ok, report = health_report(workers=request.GET.get("scope") != "web")
    return JsonResponse(report, status=200 if ok else 503)
