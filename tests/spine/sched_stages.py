"""Stage implementations for the local executor's tests: each records when it ran and in which process."""

from __future__ import annotations

import json
import os
import time

from core.stage import StageContext


def run(ctx: StageContext) -> dict:
    started = time.time()
    if ctx.config.get("fail"):
        raise RuntimeError(f"{ctx.name} fails on purpose")
    time.sleep(ctx.config.get("sleep", 0.0))
    record = {"start": started, "end": time.time(), "pid": os.getpid(), "workers": ctx.workers}
    (ctx.out / "ran.json").write_text(json.dumps(record))
    return record
