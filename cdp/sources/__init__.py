"""Sources: a catalog of connectors that bring data into a dataset pair (profile records and
events) — docs/sources.md.

* ``tracking_api`` (:mod:`cdp.sources.tracking`, served by :mod:`cdp.sources.views` under
  ``/sources/segment``): the analytics SDKs' tracking API (the Segment spec), authenticated by a
  write key; every message goes through the streaming ingestion path.
* ``database`` (:mod:`cdp.sources.database`): a table or a read-only query of a database reached
  by a SQLAlchemy URL, read incrementally by a cursor column; each run submits its rows as a batch
  (cdp/ingestion), so it is validated, counted and applied exactly like a batch file.
* ``file_drop`` (:mod:`cdp.sources.file_drop`): a folder watched on a schedule; each new .csv or
  .jsonl file becomes a batch, then moves to ``done/`` or ``failed/`` named with its job's id.

Runs of the last two are jobs (cdp/jobs, :mod:`cdp.sources.jobs`): one per run asked for, and
a recurring one per scheduled source. :mod:`cdp.sources.service` holds the resource (create,
read, pause, runs); :mod:`cdp.sources.models` the API shapes.
"""

MAX_MESSAGE_ISSUES = 10_000  # per source: older ones are deleted as new ones come
