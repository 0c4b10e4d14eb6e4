"""Settings from environment variables with safe defaults.

The embedded default (no variables set) runs the whole platform on one machine without any
server: SQLite in DATA_ROOT, kombu's filesystem broker, SQLAlchemy/SQLite result store,
a file cache. XENOBENCH_PRODUCTION=1 switches to production rules and refuses insecure values.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .paths import REPO_ROOT, ensure_on_path

ensure_on_path()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


BASE_DIR = REPO_ROOT
PRODUCTION = env_bool("XENOBENCH_PRODUCTION")
DATA_ROOT = Path(os.environ.get("DATA_ROOT", REPO_ROOT / "var")).resolve()
DATA_ROOT.mkdir(parents=True, exist_ok=True)

INSECURE_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", INSECURE_SECRET_KEY)
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc files, served from STATIC (no CDN)
    "csp",
    "accounts",
    "ops",
    "challenges",
    "submissions",
    "leaderboards",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before CsrfViewMiddleware: its process_view reads request.POST, i.e. the whole body.
    "xenobench.uploads.UploadLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "xenobench.urls"
WSGI_APPLICATION = "xenobench.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [REPO_ROOT / "platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # safe_url and friends (accounts/templatetags/web_safety.py) in every template.
            "builtins": ["accounts.templatetags.web_safety"],
        },
    }
]

# --- database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{DATA_ROOT / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=0 if DATABASE_URL.startswith("sqlite") else 60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker processes write concurrently: WAL + IMMEDIATE avoids "database is
    # locked" on lock upgrades, the timeout waits out short writer overlaps.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_ROOT / "test-db.sqlite3")}
else:
    # Persistent connections are checked before reuse, so a database restart costs one failed
    # request instead of a stream of them; a down server fails fast instead of hanging.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "5"))
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache, broker, results ---------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # A file cache is shared by the web server and worker processes (locmem would not be).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_ROOT / "cache"),
        }
    }

BROKER_DIR = DATA_ROOT / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_RESULT_BACKEND = os.environ.get(
    "CELERY_RESULT_BACKEND", REDIS_URL or f"db+sqlite:///{DATA_ROOT / 'celery-results.sqlite3'}"
)
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem"):
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    # Unacknowledged (acks_late) messages come back after this many seconds if a worker dies.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
    }

CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_ROOT / "celerybeat-schedule")

EVALUATION_TIME_LIMIT = int(os.environ.get("EVALUATION_TIME_LIMIT", "7200"))
STATISTICS_TIME_LIMIT = int(os.environ.get("STATISTICS_TIME_LIMIT", "900"))
# Chunks of GPU phases go to this queue when set (GPU workers consume it: docs/deployment.md).
GPU_QUEUE = os.environ.get("GPU_QUEUE", "")
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("WORKER_HEARTBEAT_SECONDS", "5"))
WORKER_STALE_SECONDS = float(os.environ.get("WORKER_STALE_SECONDS", "20"))

# --- files ----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = DATA_ROOT / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [REPO_ROOT / "platform" / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = DATA_ROOT / "media"
UPLOAD_ROOT = DATA_ROOT / "uploads"
DATASETS_ROOT = DATA_ROOT / "datasets"
FILE_UPLOAD_TEMP_DIR = None
# Web limits (docs/security.md, "Web"). Uploads are capped while they stream
# (xenobench/uploads.py): a Content-Length above the cap is refused before the body is read.
MAX_UPLOAD_MB = int(os.environ.get("MAX_UPLOAD_MB", "2048"))
# Multipart overhead allowed on top of a file cap (field names, boundaries, small fields).
UPLOAD_FORM_OVERHEAD_BYTES = int(os.environ.get("UPLOAD_FORM_OVERHEAD_BYTES", str(64 * 1024)))
# Non-file request bodies (forms, JSON): Django refuses larger ones with 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("MAX_REQUEST_BODY_KB", "1024")) * 1024
API_JSON_MAX_DEPTH = int(os.environ.get("API_JSON_MAX_DEPTH", "32"))
SANDBOX_BACKEND = os.environ.get("SANDBOX_BACKEND", "bwrap")
# Evaluation workers refuse to start unless the sandbox bounds a run's whole process tree
# (a per-run cgroup) and filters system calls (seccomp); on by default in production.
SANDBOX_REQUIRE_BOUNDED = env_bool("SANDBOX_REQUIRE_BOUNDED", PRODUCTION)
# Per-run sandbox limits that are not phase settings (docs/security.md, "Limits"); memory,
# time and threads come from the phase.
SANDBOX_LIMITS = {
    "max_processes": int(os.environ.get("SANDBOX_MAX_PROCESSES", "64")),
    "max_output_mb": int(os.environ.get("SANDBOX_MAX_OUTPUT_MB", "64")),
    "max_stream_mb": int(os.environ.get("SANDBOX_MAX_STREAM_MB", "16")),
    "max_log_kb": int(os.environ.get("SANDBOX_MAX_LOG_KB", "64")),
    "max_open_files": int(os.environ.get("SANDBOX_MAX_OPEN_FILES", "256")),
}

# --- i18n -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Size- and depth-limited JSON (400, never 500); multipart/form for uploads.
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "XenoBench API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- browser security (docs/security.md, "Web") ---------------------------------------------
# Scripts only from this site (no inline script, no eval); styles may be inline (figures are
# SVG with style attributes). The API docs (Swagger UI, ReDoc) are static files of this site too.
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# /healthz shows database/broker/worker details to staff only; an operator whose /healthz is
# reachable from a private network only may show them to everybody.
HEALTHZ_PUBLIC_DETAILS = env_bool("HEALTHZ_PUBLIC_DETAILS", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# --- production switch ----------------------------------------------------------------------
if PRODUCTION:
    problems = []
    if DEBUG:
        problems.append("DEBUG must be off")
    if SECRET_KEY == INSECURE_SECRET_KEY or len(SECRET_KEY) < 32:
        problems.append("SECRET_KEY must be set to a random value of at least 32 characters")
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS must list the site's host names (no '*')")
    if SANDBOX_BACKEND == "none":
        problems.append("SANDBOX_BACKEND=none runs participant code unconfined")
    if problems:
        raise ImproperlyConfigured("Production settings refused: " + "; ".join(problems))
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SESSION_COOKIE_HTTPONLY = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Browsers keep to https for this long once they saw the site over https.
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if env_bool("SECURE_PROXY_SSL", False):  # behind a TLS-terminating proxy that sets it
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Redirect http to https (on by default behind the proxy); container health checks call
    # /healthz over plain http from inside, so it is exempt.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", env_bool("SECURE_PROXY_SSL", False))
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

# --- stored objects: uploads, test sets, results, reports (xenobench/storage.py) ----------
# One named storage per kind of object, reached only through xenobench/storage.py. Default:
# folders under DATA_ROOT on this machine. With S3_BUCKET: prefixes of an S3-compatible bucket
# (django-storages), so that web, workers and beat on several hosts share them; workers fetch
# what a run needs into a local, size-bounded, checksum-verified cache (docs/deployment.md).
RESULTS_ROOT = DATA_ROOT / "results"
REPORTS_ROOT = DATA_ROOT / "reports"
OBJECT_ROOTS = {
    "uploads": UPLOAD_ROOT,
    "datasets": DATASETS_ROOT,
    "results": RESULTS_ROOT,
    "reports": REPORTS_ROOT,
}
WORKER_CACHE_DIR = Path(os.environ.get("WORKER_CACHE_DIR", DATA_ROOT / "worker-cache"))
WORKER_CACHE_MB = int(os.environ.get("WORKER_CACHE_MB", "10240"))
S3_BUCKET = os.environ.get("S3_BUCKET", "")
_FILES = "django.core.files.storage.FileSystemStorage"
STORAGES = {
    "default": {"BACKEND": _FILES},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    **globals().get("STORAGES", {}),  # the production static files storage
    **{
        kind: {"BACKEND": _FILES, "OPTIONS": {"location": str(root), "allow_overwrite": True}}
        for kind, root in OBJECT_ROOTS.items()
    },
}
if S3_BUCKET:
    try:
        import storages  # noqa: F401
    except ImportError as exc:
        raise ImproperlyConfigured(
            "S3_BUCKET is set but django-storages is not installed: "
            "pip install -r requirements.txt (django-storages[s3], boto3)"
        ) from exc
    S3_ENDPOINT_URL = os.environ.get("S3_ENDPOINT_URL") or None
    _S3 = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": S3_ENDPOINT_URL,
        "access_key": os.environ.get("S3_ACCESS_KEY_ID", ""),
        "secret_key": os.environ.get("S3_SECRET_ACCESS_KEY", ""),
        "region_name": os.environ.get("S3_REGION", "us-east-1"),
        # MinIO and other self-hosted servers want path-style URLs (http://host/bucket/key).
        "addressing_style": os.environ.get(
            "S3_ADDRESSING_STYLE", "path" if S3_ENDPOINT_URL else "auto"
        ),
        "default_acl": None,
        "querystring_auth": True,
        "file_overwrite": True,  # xenobench/storage.py chooses unique names itself
    }
    _PREFIX = os.environ.get("S3_PREFIX", "").strip("/")
    for kind in ("default", *OBJECT_ROOTS):
        location = "/".join(x for x in (_PREFIX, "media" if kind == "default" else kind) if x)
        STORAGES[kind] = {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**_S3, "location": location},
        }

# --- mail (notifications) -------------------------------------------------------------------
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "xenobench@localhost")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = str(DATA_ROOT / "mail")
RECONCILE_LOST_MESSAGE_SECONDS = float(os.environ.get("RECONCILE_LOST_MESSAGE_SECONDS", "900"))
RECONCILE_EVERY_SECONDS = float(os.environ.get("RECONCILE_EVERY_SECONDS", "60"))
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "submissions.tasks.reconcile", "schedule": RECONCILE_EVERY_SECONDS},
}
RANKING_MIN_INTERVAL_SECONDS = float(os.environ.get("RANKING_MIN_INTERVAL_SECONDS", "10"))
