"""The service's process, around the app: the factory each of ``cdp serve --workers N``'s
processes builds its app with, the garbage collector's tuning once everything is imported, and the
Luma demo data loaded on a first ``cdp serve --demo``."""

from __future__ import annotations

import time
from collections.abc import Callable


def worker_app():
    """The app of one of ``cdp serve --workers N``'s processes (settings from the environment)."""
    from cdp.api import create_app

    app = create_app()
    tune_gc()
    return app


def tune_gc() -> None:
    """The server's garbage collector, once everything is imported: what exists now is moved out of
    the collector's sight (``gc.freeze``: modules, classes, routes never become garbage) and the
    youngest generation is collected every 50,000 allocations instead of 700. Measured (issue 16,
    bench/RESULTS.md): with the defaults, full collections walking the whole heap took a third of
    a 500-record request's time; cyclic garbage still goes, a little later."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def load_demo_data(engine, settings, *, say: Callable[[str], None]) -> None:
    """On first start (an empty `prod`): the Luma demo data, loaded over HTTP through a copy of the
    app served on a loopback port for the while (cdp/demo/seed.py); ``say`` reports progress."""

    from cdp.api import create_app
    from cdp.api.local import serve_in_thread
    from cdp.demo.seed import is_empty, loader_key, seed_over_http

    if not is_empty(engine):
        return
    started = time.monotonic()
    key_id, key = loader_key(engine)
    with serve_in_thread(create_app(settings)) as base:
        loaded = seed_over_http(base, key_id, key, progress=lambda text: say(f"demo data: {text}"))
    say(f"loaded the Luma demo data into sandbox prod in {time.monotonic() - started:.1f} s: "
        f"{loaded.profiles:,} profiles, segments {', '.join(loaded.segments)}")
