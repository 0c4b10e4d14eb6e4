"""Template filters for participant-supplied values (a builtin: no {% load %} needed).

A URL typed by a participant becomes a link only when its scheme is http(s); anything else
(``javascript:``, ``data:``, saved before validation existed) is shown as plain text."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import template
from django.utils.html import format_html

register = template.Library()

SAFE_SCHEMES = ("http", "https")


def is_safe_url(value: object) -> bool:
    """True for an absolute http(s) URL with a host; browsers strip control characters and
    spaces before reading a scheme, so those make a URL unsafe too."""
    text = str(value or "")
    if not text or any(ord(c) < 33 or c == "\\" for c in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in SAFE_SCHEMES and bool(parts.netloc)


@register.filter
def safe_url(value: object) -> str:
    """The URL if it is safe to put in href/src, else an empty string."""
    return str(value) if is_safe_url(value) else ""


@register.filter
def external_link(value: object) -> str:
    """An escaped ``<a rel="nofollow noopener noreferrer">`` for http(s) URLs, escaped text
    otherwise."""
    if not value:
        return ""
    if is_safe_url(value):
        return format_html('<a href="{0}" rel="nofollow noopener noreferrer">{0}</a>', str(value))
    return format_html('<span class="unsafe-url">{}</span>', str(value))
