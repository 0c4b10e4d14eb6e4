"""Custom user model from day one: swapping it later needs a database rebuild."""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    affiliation = models.CharField(max_length=200, blank=True)
    email_notifications = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.username
