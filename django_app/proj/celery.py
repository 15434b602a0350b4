"""The project's Celery app and its celery-bgp instance (what ``celery -A proj`` loads)."""
from __future__ import annotations

import os

from celery import Celery

from celery_bgp import BackgroundProcessing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

bgp = BackgroundProcessing(app)  # settings: CELERY_BGP_* in proj/settings.py
bgp.autodiscover_handlers()  # imports <app>.handlers of every installed app
# A daemon the worker keeps alive: admin -> Daemons -> select it -> "Stop selected daemons".
bgp.daemon("stock-watcher", "shop.daemons:watch_stock", restart="unless-stopped")
