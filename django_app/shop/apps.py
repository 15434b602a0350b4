"""The shop app; declares its recurring job once Django is ready."""
from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Demo shop"

    def ready(self) -> None:
        from proj.celery import bgp

        # A recurring job: beat enqueues a tracked job every 30 seconds.
        bgp.jobs.recurring("clean-carts", "shop.jobs:clean_abandoned_carts", 30,
                           queue="celery")
