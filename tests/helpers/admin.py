"""Admin test clients: a staff user logged in with exactly the permissions a test names."""
from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client


def staff_with(*codenames: str) -> Client:
    """A client logged in as a new staff user holding these celery_bgp permissions."""
    user = get_user_model().objects.create_user(f"ops-{uuid.uuid4().hex[:6]}", password="pw",
                                                is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="celery_bgp", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def superuser(username: str = "root") -> Client:
    """A client logged in as a new superuser."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username, password="pw"))
    return client
