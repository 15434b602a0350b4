"""The allowed job module of the allow-list tests.

It defines jobs (functions, methods, static and class methods, nested classes) next to
everything an attacker would like to reach through it: other modules imported under
other names, functions and classes re-exported from a module that is not allowed, a
class inheriting from one, builtins, instances, properties, descriptors, and
``__getattr__`` hooks at module, instance and metaclass level (they record in
``probes.TOUCHED`` if they ever run).
"""
from __future__ import annotations

import functools
import json  # noqa: F401  (reachable as allowed:json.dumps)
import os
import subprocess as shell  # noqa: F401  (an imported module under another name)
from json import dumps
from os.path import join as path_join  # noqa: F401

from . import elsewhere as other  # noqa: F401  (a module that is not allowed, aliased)
from . import probes, sibling  # noqa: F401  (sibling: an allowed module, still a module)
from .elsewhere import Base, forged, helper, swap, wrap  # noqa: F401
from .elsewhere import Helper as ReExportedClass
from .elsewhere import helper as renamed_helper  # noqa: F401
from .sibling import sibling_job  # noqa: F401  (re-exported from an allowed module: fine)


def job(x):
    return ("job", x)


def _private_job(x):
    return ("private", x)


@wrap
def decorated(x):
    """Wrapped by a decorator of another module (functools.wraps): still a job of here."""
    return ("decorated", x)


@swap
def swapped(x):
    """Replaced by ``elsewhere.helper`` by its decorator: refused."""


wrapped_foreign = wrap(helper)  # a wrapper of a foreign function: refused
partial_job = functools.partial(job, 1)  # not a function
cached_job = functools.lru_cache(job)  # not a function
alias_builtin = print
number = 42
job.attr = os.system  # a function attribute: functions are never walked into


class Service:
    """A service a container builds; plain methods run on the activator's instance."""

    def __init__(self, prefix="svc"):
        self.prefix = prefix

    def method(self, x):
        return (self.prefix, x)

    @staticmethod
    def static(x):
        return ("static", x)

    @classmethod
    def klass(cls, x):
        return (cls.__name__, x)

    foreign_static = staticmethod(dumps)  # a foreign function put on an allowed class
    foreign_method = helper
    builtin_static = staticmethod(len)
    Imported = ReExportedClass  # a foreign class as a class attribute

    @property
    def prop(self):
        return probes.touched("Service.prop")

    def __getattr__(self, name):
        return probes.touched(f"Service instance __getattr__({name})")

    class Nested:
        def run(self, x):
            return ("nested", x)

        @staticmethod
        def static(x):
            return ("nested static", x)

        class Deeper:
            @classmethod
            def build(cls, x):
                return (cls.__qualname__, x)


class Child(Service):
    """Inherits from a class of this module: its inherited methods are jobs too."""

    def own(self, x):
        return ("child", x)


class LocalFromForeign(Base):
    """Defined here, but inheriting from a class of a module that is not allowed."""

    def own(self, x):
        return ("local", x)


class DictLike(dict):
    """Inherits builtins: ``keys``, ``get``, ``fromkeys`` ... are refused."""


class Descriptor:
    def __get__(self, obj, owner=None):
        return probes.touched("Descriptor.__get__")


class HasDescriptor:
    sneaky = Descriptor()


class Meta(type):
    def __getattr__(cls, name):
        return probes.touched(f"Meta.__getattr__({name})")

    @property
    def mprop(cls):
        return probes.touched("Meta.mprop")

    def meta_method(cls):
        return probes.touched("Meta.meta_method")


class WithMeta(metaclass=Meta):
    def run(self, x):
        return ("meta", x)


instance = Service("instance")


def __getattr__(name):
    return probes.touched(f"module __getattr__({name})")
