"""The demo project: a Django site with its Celery app, as in Celery's Django guide."""
from .celery import app as celery_app

__all__ = ["celery_app"]
