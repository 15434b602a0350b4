"""The job allow-list: what resolves is *defined in* an allowed module, nothing else.

Property-based (hypothesis) over the fixture package ``tests.apps.allowlist``: job names
and attribute chains built from everything the allowed module holds (imported modules
under other names, re-exported functions and classes, nested classes, methods,
properties, descriptors, ``__getattr__`` hooks) and from dunders and other modules.
Then the known attacks one by one, the cache, recurring jobs and a tampered row.
"""
from __future__ import annotations

import collections
import inspect
import sys
import types
import uuid
from datetime import datetime, timezone

import pytest
from celery import Celery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celery_bgp import BackgroundProcessing, ImproperlyConfigured
from celery_bgp.jobs import JobNotAllowed
from celery_bgp.jobs.invocation import _resolve, allowed, resolve
from celery_bgp.jobs.memory import MemoryJobStore
from celery_bgp.jobs.model import JobKind, JobRecord, StateRecord
from tests.apps.allowlist import allowed as A
from tests.apps.allowlist import elsewhere, probes

PKG = "tests.apps.allowlist"
ALLOWED = f"{PKG}.allowed"
SIBLING = f"{PKG}.sibling"
ALLOW = (ALLOWED, SIBLING)
NEVER = f"{PKG}.never"

properties = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])

DUNDERS = ["__class__", "__globals__", "__builtins__", "__dict__", "__init__", "__call__",
           "__func__", "__self__", "__module__", "__wrapped__", "__code__", "__closure__",
           "__subclasses__", "__mro__", "__bases__", "__base__", "__getattribute__",
           "__getattr__", "__get__", "__reduce__", "__reduce_ex__", "__import__",
           "__loader__", "__spec__", "__init_subclass__", "__new__", "__private"]


def _class_names(cls, seen):
    if cls in seen:
        return set()
    seen.add(cls)
    names = set()
    for klass in cls.__mro__:
        for key, value in vars(klass).items():
            names.add(key)
            if isinstance(value, type):
                names |= _class_names(value, seen)
    return names


def _vocabulary():
    """Every name reachable in the fixtures, plus what other modules offer."""
    names = set(vars(A))
    seen = set()
    for value in list(vars(A).values()) + list(vars(elsewhere).values()):
        if isinstance(value, type):
            names |= _class_names(value, seen)
    names |= {"system", "popen", "execv", "run", "Popen", "check_output", "dumps", "loads",
              "path", "join", "getcwd", "environ", "modules", "eval", "exec", "open",
              "attr", "nope", "missing", "lazy"}
    return sorted(names | set(DUNDERS))


VOCABULARY = _vocabulary()
MODULES = [ALLOWED, SIBLING, f"{PKG}.elsewhere", f"{PKG}.probes", PKG, NEVER, "os", "json",
           "subprocess", "builtins", "tests.apps.jobs", "tests", ""]
identifiers = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}\Z")
parts = st.sampled_from(VOCABULARY) | identifiers
paths = st.lists(parts, min_size=1, max_size=5).map(".".join)
names = st.builds(lambda m, p: f"{m}:{p}", st.sampled_from(MODULES), paths)
junk = st.text(max_size=40)  # malformed names: colons, dots, spaces, unicode


@st.composite
def walks(draw):
    """A path that follows what really is there: module and class dicts, the MRO, other
    modules the allowed one imported (an attacker reads the source too)."""
    obj, path = A, []
    for _ in range(draw(st.integers(1, 4))):
        if isinstance(obj, types.ModuleType):
            keys = vars(obj)
        else:
            keys = {key for klass in obj.__mro__ for key in vars(klass)}
        part = draw(st.sampled_from(sorted(keys)))
        path.append(part)
        value = inspect.getattr_static(obj, part)
        if not isinstance(value, (type, types.ModuleType)):
            break
        obj = value
    return f"{ALLOWED}:{'.'.join(path)}"


def _defined_in_allowed(fn, allow):
    """``fn`` is a Python function whose code was written in an allowed module."""
    assert type(fn) is types.FunctionType, fn
    assert allowed(fn.__module__, allow), fn.__module__
    inner = fn
    while not allowed(inner.__globals__["__name__"], allow):
        inner = inner.__dict__["__wrapped__"]  # only a functools.wraps wrapper may differ
        assert type(inner) is types.FunctionType
        assert allowed(inner.__module__, allow)
    return True


def check_resolution(name, allow):
    """Resolve ``name``: a clear refusal, or a function defined in an allowed module."""
    try:
        invocation = resolve(name, allow)
    except ImproperlyConfigured as exc:  # JobNotAllowed, not importable, no such name
        assert str(exc)
        return None
    module_name, _, qualname = name.partition(":")
    assert allowed(module_name, allow)
    assert not any(part.startswith("__") for part in qualname.split("."))
    target = invocation.target
    if isinstance(target, types.MethodType):  # a class method, bound to its class
        owner = target.__self__
        assert inspect.isclass(owner) and allowed(owner.__module__, allow)
        target = target.__func__
    _defined_in_allowed(target, allow)
    if invocation.owner is not None:  # a plain method: the activator builds the owner
        assert inspect.isclass(invocation.owner)
        assert allowed(invocation.owner.__module__, allow)
        assert target is inspect.getattr_static(invocation.owner, qualname.split(".")[-1])
    assert target.__globals__ is not elsewhere.__dict__ or "__wrapped__" in target.__dict__
    return invocation


@pytest.fixture(autouse=True)
def _untouched():
    probes.TOUCHED.clear()
    yield
    assert probes.TOUCHED == [], "resolution ran a __getattr__, property or descriptor"
    assert NEVER not in sys.modules


@properties
@given(names)
def test_whatever_resolves_is_defined_in_an_allowed_module(name):
    check_resolution(name, ALLOW)
    assert probes.TOUCHED == []


def test_walking_what_the_allowed_module_holds_resolves_only_its_own_functions():
    outcomes = collections.Counter()

    @properties
    @given(walks())
    def walk(name):
        outcomes[check_resolution(name, ALLOW) is not None] += 1
        assert probes.TOUCHED == []

    walk()
    assert outcomes[True] >= 10 and outcomes[False] >= 10, outcomes  # both sides exercised


@properties
@given(names | junk)
def test_any_text_resolves_or_is_refused_clearly(name):
    check_resolution(name, ALLOW)
    assert probes.TOUCHED == []


@properties
@given(st.sampled_from([m for m in MODULES if not allowed(m, ALLOW)]), paths)
def test_nothing_outside_the_allowed_modules_ever_resolves(module, path):
    with pytest.raises(JobNotAllowed):
        resolve(f"{module}:{path}", ALLOW)


@properties
@given(st.lists(parts, max_size=3), st.sampled_from(DUNDERS), st.lists(parts, max_size=3))
def test_a_dunder_anywhere_in_the_path_is_refused(before, dunder, after):
    name = f"{ALLOWED}:{'.'.join([*before, dunder, *after])}"
    with pytest.raises(JobNotAllowed) as refused:
        resolve(name, ALLOW)
    if not any(p.startswith("__") for p in before):
        assert repr(dunder) in str(refused.value)


@properties
@given(names.filter(lambda name: not name.startswith(f"{NEVER}:")))
def test_the_cache_never_answers_for_another_allow_list(name):
    wide = (PKG,)  # the whole fixture package: re-exports from elsewhere are allowed there
    resolve_or_error = []
    for allow in (wide, ALLOW):
        try:
            resolve_or_error.append(resolve(name, allow).target)
        except ImproperlyConfigured as exc:
            resolve_or_error.append(type(exc))
    _resolve.cache_clear()
    try:
        fresh = resolve(name, ALLOW).target
    except ImproperlyConfigured as exc:
        fresh = type(exc)
    if isinstance(fresh, types.MethodType):  # class methods are bound anew
        assert fresh == resolve_or_error[1]
    else:
        assert fresh is resolve_or_error[1]


# --- the known attacks, one by one ------------------------------------------------------

@pytest.mark.parametrize(("path", "refused_at", "why"), [
    ("os.system", "os", "module os"),
    ("json.dumps", "json", "module json"),
    ("shell.run", "shell", "module subprocess"),
    ("other.helper", "other", f"module {PKG}.elsewhere"),
    ("sibling.sibling_job", "sibling", "another module"),  # allowed, but still a module
    ("dumps", "dumps", "function json.dumps"),
    ("path_join", "path_join", "not an allowed job module"),
    ("helper", "helper", "imported or re-exported"),
    ("renamed_helper", "renamed_helper", "imported or re-exported"),
    ("swapped", "swapped", "imported or re-exported"),
    ("wrapped_foreign", "wrapped_foreign", "imported or re-exported"),
    ("forged", "forged", f"its code comes from module {PKG}.elsewhere"),
    ("ReExportedClass.method", "ReExportedClass", f"class {PKG}.elsewhere.Helper"),
    ("ReExportedClass.static", "ReExportedClass", "imported from a module"),
    ("ReExportedClass.klass", "ReExportedClass", "imported from a module"),
    ("Base.base_method", "Base", "imported from a module"),
    ("LocalFromForeign.base_method", "LocalFromForeign.base_method", "inherited from class"),
    ("LocalFromForeign.base_static", "LocalFromForeign.base_static", "inherited from class"),
    ("DictLike.keys", "DictLike.keys", "inherited from class builtins.dict"),
    ("DictLike.fromkeys", "DictLike.fromkeys", "inherited from class builtins.dict"),
    ("Service.foreign_static", "Service.foreign_static", "function json.dumps"),
    ("Service.foreign_method", "Service.foreign_method", "imported or re-exported"),
    ("Service.builtin_static", "Service.builtin_static", "wraps a builtin"),
    ("Service.Imported.method", "Service.Imported", "imported from a module"),
    ("Service.prop", "Service.prop", "builtins.property object, not a function"),
    ("HasDescriptor.sneaky", "HasDescriptor.sneaky", "Descriptor object, not a function"),
    ("instance.method", "instance", "Service object"),
    ("job.attr", "job", "walks only through classes"),
    ("alias_builtin", "alias_builtin", "builtin"),
    ("partial_job", "partial_job", "functools.partial object"),
    ("cached_job", "cached_job", "not a function"),
    ("number", "number", "builtins.int object"),
    ("Service", "Service", "name one of its methods"),
    ("probes.touched", "probes", "another module"),
])
def test_known_attacks_are_refused_naming_the_part_and_why(path, refused_at, why):
    with pytest.raises(JobNotAllowed) as refused:
        resolve(f"{ALLOWED}:{path}", ALLOW)
    message = str(refused.value)
    assert f"refused at {ALLOWED}:{refused_at}:" in message
    assert why in message


@pytest.mark.parametrize("path", [
    "__builtins__", "__builtins__.eval", "job.__globals__", "job.__globals__.os.system",
    "Service.__class__", "Service.__init__", "Service.__call__", "Service.__dict__",
    "Service.__class__.__subclasses__", "Service.__getattr__", "__getattr__", "__dict__",
    "Service.Nested.__init__", "instance.__class__", "Service.__mro__", "__spec__.loader",
])
def test_dunders_are_refused_outright(path):
    with pytest.raises(JobNotAllowed, match="dunder"):
        resolve(f"{ALLOWED}:{path}", ALLOW)


@pytest.mark.parametrize("path", [
    "lazy",  # the module __getattr__ would answer: never asked
    "WithMeta.anything",  # the metaclass __getattr__ would answer: never asked
    "WithMeta.mprop", "WithMeta.meta_method",  # on the metaclass, not in the MRO
    "Service.missing",  # the instance __getattr__ would answer: never asked
])
def test_hooks_are_never_run_and_their_names_do_not_exist(path):
    with pytest.raises(ImproperlyConfigured, match="has no"):
        resolve(f"{ALLOWED}:{path}", ALLOW)


@pytest.mark.parametrize(("path", "args", "result", "owner"), [
    ("job", [1], ("job", 1), None),
    ("_private_job", [2], ("private", 2), None),
    ("decorated", [3], ("wrapped", ("decorated", 3)), None),
    ("sibling_job", [4], ("sibling", 4), None),  # re-exported from another allowed module
    ("Service.method", [5], ("built", 5), A.Service),
    ("Service.static", [6], ("static", 6), None),
    ("Service.klass", [7], ("Service", 7), None),
    ("Service.Nested.run", [8], ("nested", 8), A.Service.Nested),
    ("Service.Nested.static", [9], ("nested static", 9), None),
    ("Service.Nested.Deeper.build", [10], ("Service.Nested.Deeper", 10), None),
    ("Child.method", [11], ("built", 11), A.Child),  # inherited from an allowed class
    ("Child.klass", [12], ("Child", 12), None),  # bound to the class on the path
    ("Child.own", [13], ("child", 13), A.Child),
    ("LocalFromForeign.own", [14], ("local", 14), A.LocalFromForeign),
    ("WithMeta.run", [15], ("meta", 15), A.WithMeta),
])
def test_what_is_defined_in_the_allowed_module_runs(path, args, result, owner):
    built = []

    def activator(cls):
        built.append(cls)
        return cls("built") if issubclass(cls, A.Service) else cls()

    invocation = check_resolution(f"{ALLOWED}:{path}", ALLOW)
    assert invocation is not None and invocation.owner is owner
    assert invocation.call(args, {}, activator=activator, context=None,
                           cancellation=None) == result
    assert built == ([owner] if owner else [])


def test_the_allowed_module_message_says_where_to_add_it():
    with pytest.raises(JobNotAllowed) as refused:
        resolve(f"{PKG}.elsewhere:helper", ALLOW)
    message = str(refused.value)
    assert f"{PKG}.elsewhere is not an allowed job module" in message
    assert "bgp_job_modules allows" in message
    assert "job_modules=" in message and "CELERY_BGP_JOB_MODULES" in message
    with pytest.raises(JobNotAllowed, match="nothing yet"):
        resolve(f"{ALLOWED}:job", ())


@pytest.mark.parametrize("name", [
    "os.system", ":job", f"{ALLOWED}:", f"{ALLOWED}:job.", f"{ALLOWED}:job:x",
    f"{ALLOWED}:job()", f"{ALLOWED}: job", f"{ALLOWED}:\uff4a\uff4f\uff42", f"{ALLOWED}.:job", 42,
])
def test_malformed_names_are_refused_before_any_import(name):
    with pytest.raises(JobNotAllowed, match=r"malformed|must be a string|not an allowed"):
        resolve(name, ALLOW)


def test_a_cached_resolution_is_not_reused_under_a_narrower_allow_list():
    name = f"{ALLOWED}:helper"  # re-exported from elsewhere
    assert resolve(name, (PKG,)).target is elsewhere.helper  # elsewhere allowed here
    with pytest.raises(JobNotAllowed, match="imported or re-exported"):
        resolve(name, ALLOW)
    assert resolve(name, (PKG,)).target is elsewhere.helper


def test_an_allowed_name_aliased_to_another_module_is_refused(monkeypatch):
    import os

    alias = f"{PKG}.alias_of_os"
    monkeypatch.setitem(sys.modules, alias, os)
    with pytest.raises(JobNotAllowed, match="is an alias of module os"):
        resolve(f"{alias}:popen", (alias,))


# --- through the jobs engine (eager Celery, memory store) -------------------------------

def make():
    app = Celery(f"allow-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(broker_url="memory://", task_always_eager=True)
    return BackgroundProcessing(app, name=f"env-{uuid.uuid4().hex[:6]}",
                                job_store=MemoryJobStore(), job_modules=list(ALLOW),
                                event_write="sync", job_retry={"max_attempts": 3})


@pytest.mark.parametrize("path", ["os.system", "json.dumps", "other.helper",
                                  "ReExportedClass.method", "job.__globals__"])
def test_submit_and_recurring_refuse_and_create_nothing(path):
    bgp = make()
    name = f"{ALLOWED}:{path}"
    with pytest.raises(JobNotAllowed):
        bgp.jobs.submit(name, args=["echo attacked"])
    with pytest.raises(JobNotAllowed):
        bgp.jobs.recurring("attack", name, 60, args=["echo attacked"])
    assert "attack" not in bgp.jobs.recurring_jobs
    assert bgp.jobs.count() == 0


def test_recurring_jobs_defined_in_the_allowed_module_still_register():
    bgp = make()
    bgp.jobs.recurring("ok", f"{ALLOWED}:Service.static", 60, args=[1])
    assert bgp.jobs.recurring_jobs["ok"]["fn"] == f"{ALLOWED}:Service.static"
    job = bgp.jobs.get(bgp.jobs.run_recurring("ok"))
    assert (job.state, tuple(job.result)) == ("Succeeded", ("static", 1))


def test_a_tampered_row_fails_at_execution_without_retry(tmp_path):
    bgp = make()
    now = datetime.now(timezone.utc)
    marker = tmp_path / "attacked"
    row = JobRecord(id=uuid.uuid4().hex, name=f"{ALLOWED}:os.system", kind=JobKind.CALLABLE,
                    queue="celery", priority=2, environment=bgp.name, state="Created",
                    created=now, modified=now, args=[f"touch {marker}"])
    bgp.jobs.store.create(row, StateRecord("Created", now))
    bgp.jobs.requeue(row.id)
    job = bgp.jobs.get(row.id)
    assert (job.state, job.attempt) == ("Failed", 1)  # not retried: retrying won't help
    failed = bgp.jobs.history(row.id)[-1]
    assert failed.data["exception_type"] == "celery_bgp.jobs.invocation.JobNotAllowed"
    assert f"refused at {ALLOWED}:os" in failed.data["message"]
    assert not marker.exists()


def test_a_script_registered_under_its_module_name_keeps_its_own_functions(monkeypatch):
    # The documentation's examples run as scripts: sys.modules["name"] = __main__.
    script = types.ModuleType("__main__")
    exec("import os\ndef work(x):\n    return ('script', x)\n", vars(script))
    name = f"{PKG}.script"
    monkeypatch.setitem(sys.modules, name, script)
    invocation = resolve(f"{name}:work", (name,))
    assert invocation.call([1], {}, activator=None, context=None,
                           cancellation=None) == ("script", 1)
    with pytest.raises(JobNotAllowed, match="module os"):
        resolve(f"{name}:os.system", (name,))
