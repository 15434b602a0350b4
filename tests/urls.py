"""URLs of the test Django project: the admin and the REST polling API."""
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("bgp/", include("celery_bgp.contrib.django.urls")),
]
