from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class XenoUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (
        ("XenoBench", {"fields": ("affiliation", "email_notifications")}),
    )
    list_display = ("username", "email", "affiliation", "is_staff", "date_joined")
