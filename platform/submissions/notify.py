"""Notifications when a submission ends: an in-site message and an email (hook)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

log = logging.getLogger(__name__)


def notify_finished(sub) -> None:
    from .models import Message

    text = (
        f"Submission #{sub.pk} ({sub.method_name}) {sub.get_status_display()}: {sub.status_reason}"[
            :500
        ]
    )
    Message.objects.create(user=sub.user, text=text, link=sub.get_absolute_url())
    if sub.user.email and getattr(sub.user, "email_notifications", True):
        try:
            send_mail(
                f"[XenoBench] submission #{sub.pk} {sub.status}",
                text + f"\n\n{settings.SITE_URL}{sub.get_absolute_url()}",
                settings.DEFAULT_FROM_EMAIL,
                [sub.user.email],
            )
        except Exception:  # noqa: BLE001 - a mail outage must not fail an evaluation
            log.exception("could not send notification mail")
