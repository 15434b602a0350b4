"""URLs of the demo: the admin, and the REST polling API under /bgp/."""
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("bgp/", include("celery_bgp.contrib.django.urls")),
]
