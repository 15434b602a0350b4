"""The reusable Django app: job store models, migrations and the ORM job store.

``INSTALLED_APPS += ["django_celery_results", "celery_bgp.contrib.django"]`` then
``migrate``. Needs the ``[django]`` extra; importing without Django fails with an
error that names it.
"""
from celery_bgp.extras import require

require("django", "django", "celery_bgp.contrib.django (the Django app and job store)")
