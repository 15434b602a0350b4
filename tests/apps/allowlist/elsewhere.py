"""NOT an allowed job module: ``allowed`` imports, re-exports and subclasses what is here."""
from __future__ import annotations

import functools


def helper(x):
    raise AssertionError("a function of a module that is not allowed ran as a job")


class Helper:
    """A class ``allowed`` re-exports (as ``ReExportedClass``)."""

    def method(self, x):
        raise AssertionError("a method of a class that is not allowed ran as a job")

    @staticmethod
    def static(x):
        raise AssertionError("a static method of a class that is not allowed ran as a job")

    @classmethod
    def klass(cls, x):
        raise AssertionError("a class method of a class that is not allowed ran as a job")


class Base:
    """A base class of a class defined in ``allowed``."""

    def base_method(self, x):
        raise AssertionError("an inherited method from a module that is not allowed ran")

    @staticmethod
    def base_static(x):
        raise AssertionError("an inherited static method from a module that is not allowed ran")


def wrap(fn):
    """A well-behaved decorator: the wrapper counts as defined where ``fn`` was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return ("wrapped", fn(*args, **kwargs))

    return wrapper


def swap(fn):
    """A decorator that replaces the function with one of its own module."""
    return helper


def forged(x):
    raise AssertionError("a function lying about its module ran as a job")


# Claims to be defined in the allowed module; its code and globals are still here.
forged.__module__ = "tests.apps.allowlist.allowed"
forged.__qualname__ = "forged"
