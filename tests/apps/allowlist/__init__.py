"""Fixture modules of the job allow-list tests (tests/unit/test_allowlist_properties.py).

``allowed`` (and ``sibling``) are the allowed job modules; ``elsewhere`` is a sibling
that is not allowed: ``allowed`` imports it under other names, re-exports its
functions and classes, and subclasses it. ``probes`` records any code that runs while
a job name is resolved (module and instance ``__getattr__``, properties, descriptors):
resolution must leave it empty. ``never`` is imported by nothing: resolution must
never import it.
"""
