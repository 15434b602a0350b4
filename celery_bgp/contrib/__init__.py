"""Integrations with other frameworks (Django, pytest); each imports its own extra."""
