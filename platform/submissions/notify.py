"""Notifications: to the participant when a submission ends (an in-site message and an
email), to the organizers when their challenge needs attention (an in-site message)."""

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


def notify_organizers(challenge, text: str, link: str = "") -> int:
    """An in-site message to each organizer of `challenge` (staff where it has none), once:
    an identical unread message is not repeated, so a misconfigured phase that fails many
    submissions does not flood the inbox. Returns the number of messages created."""
    from django.contrib.auth import get_user_model

    from .models import Message

    text = text[:500]
    staff = get_user_model().objects.filter(is_staff=True, is_active=True)
    users = list(challenge.organizers.all()) or list(staff)
    created = 0
    for user in users:
        if Message.objects.filter(user=user, text=text, read=False).exists():
            continue
        Message.objects.create(user=user, text=text, link=link)
        created += 1
    return created
