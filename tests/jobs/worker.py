"""A worker process for the job tests: ``python -m tests.jobs.worker URL KIND MODE FOLDER`` runs
a real Runner on the database at URL with one kind, until SIGTERM (or SIGKILL, for the tests of a
dead worker). Modes: ``record`` — each job appends its id to ``FOLDER/<pid>.log``; ``block`` —
a job writes ``FOLDER/started-<id>`` and then runs until it is stopped."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path


def main() -> None:
    url, kind_name, mode, folder = sys.argv[1:5]
    out = Path(folder)

    from cdp.jobs import JobKind, Registry, Runner
    from cdp.storage.database import create_engine

    def record(context) -> None:
        with open(out / f"{os.getpid()}.log", "a") as log:
            log.write(f"{context.job_id}\n")
        time.sleep(0.05)  # long enough for the other process to want the same job, even on a busy machine

    def block(context) -> None:
        (out / f"started-{context.job_id}").write_text(str(os.getpid()))
        while True:
            context.checkpoint()
            time.sleep(0.05)

    engine = create_engine(url)
    runner = Runner(engine, Registry([JobKind(kind_name, run=record if mode == "record" else block)]), workers=2,
                    poll_seconds=0.05, heartbeat_seconds=0.2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner.start()
    (out / f"ready-{os.getpid()}").write_text("")
    stop.wait(120)  # bounded: a test that forgets its worker does not leave it running
    runner.stop()
    engine.dispose()


if __name__ == "__main__":
    main()
