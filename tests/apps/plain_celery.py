"""A Celery project without celery-bgp (the CLI must say so)."""
from celery import Celery

app = Celery("plain", broker="memory://", set_as_current=False)
