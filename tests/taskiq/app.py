"""The workers' tasks module for the taskiq tests: what a team's own ``tasks.py`` would be, run by
the real ``taskiq worker tests.taskiq.app:broker``.

The broker is taskiq-redis's ``RedisStreamBroker`` on the test's Redis, with the test's own
stream, consumer group, result keys and limiter prefix, all read from ``SMSVN_TEST_TASKIQ`` (a
JSON object, nothing secret). The provider's credentials and base URL come, as in production,
from ``SMSVN_SPEEDSMS_*`` through the client's ``from_env``.

With ``"kill"`` set, the worker kills itself with SIGKILL at a seeded random step of its work
(``tests.campaign.runner``: after claiming, after marking a batch in flight, ...); every worker
prints ``runner <id>`` on stderr when its journal runner registers, and ``taken <Unix time>``
each time its shared limiter lets a request go.
"""

from __future__ import annotations

import json
import os
import random

import smsvn
import smsvn.taskiq
from smsvn.limits import RateLimit
from tests.campaign import runner as crash
from tests.multiprocess.harness import StampedLimiter
from tests.taskiq.harness import Config, make_broker

CONFIG = Config(**json.loads(os.environ["SMSVN_TEST_TASKIQ"]))

broker = make_broker(CONFIG)
work = smsvn.taskiq.register(
    broker,
    limiter=lambda: StampedLimiter(CONFIG.redis_url, prefix=CONFIG.limiter, echo=True),
    client_options={
        "rate_limit": RateLimit(requests=CONFIG.requests, period=CONFIG.period),
        "timeout": 10,
    },
)

crash._install(random.Random(CONFIG.seed), CONFIG.kill, CONFIG.moments)
