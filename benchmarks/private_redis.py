"""The benchmarks' Redis: a redis-server of their own, never the one on 6379.

Importing this module starts one (the test suite's helper, on a free port; it stops
with the process) and points ``BGP_BENCH_BROKER``/``EVENTS``/``COUNTER`` at its
databases 5-7, unless you set them. ``OWNED`` says whether the benchmark may empty
those databases: only when they are on the server started here.
"""
from __future__ import annotations

import os

_CHOSEN = {name: os.environ.get(name) for name in
           ("BGP_BENCH_BROKER", "BGP_BENCH_EVENTS", "BGP_BENCH_COUNTER")}
_OWN_SERVER = not os.environ.get("BGP_TEST_REDIS_PORT")

from tests.helpers.servers import REDIS_HOST, REDIS_PORT  # noqa: E402  (starts the server)

#: True when the benchmark's databases are on a server this process started.
OWNED = _OWN_SERVER and not any(_CHOSEN.values())

for _name, _db in (("BGP_BENCH_BROKER", 5), ("BGP_BENCH_EVENTS", 6), ("BGP_BENCH_COUNTER", 7)):
    os.environ.setdefault(_name, f"redis://{REDIS_HOST}:{REDIS_PORT}/{_db}")
