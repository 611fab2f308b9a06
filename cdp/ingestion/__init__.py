"""Ingestion: records into a dataset, validated against the sandbox's schema in force.

* Streaming — ``POST /v1/datasets/{id}/records``: one record, or ``{"records": [...]}``. The
  answer lists, per record, ``accepted`` / ``rejected`` (with ``errors``: path + message) /
  ``duplicate`` (an event id already stored in this dataset), the profile it landed on and any
  ``warnings``. Rejected records are never stored; the others are.
* Batch files — ``POST /v1/datasets/{id}/batches`` (multipart: a CSV or JSON Lines ``file``, a
  JSON ``mapping``, an optional ``error_threshold``) answers 202 with a job, run by the job
  runner (cdp/jobs); ``GET /v1/datasets/{id}/batches`` lists a dataset's jobs. A job is then its
  own resource: ``GET /v1/batches/{id}`` (status queued | processing | succeeded | failed,
  counts, attempts), ``GET /v1/batches/{id}/errors`` (row number, column, reason, raw row; JSON
  pages of at most ``limit`` errors and ~1 MiB, or ``?format=jsonl`` streamed; each keeps at most
  2 KiB of its raw row) and ``POST /v1/batches/{id}/retry`` (runs a failed
  job — or one whose server stopped while processing it — again from the stored file). All rows
  are validated first and the valid ones applied in ONE transaction; when more than
  ``error_threshold`` (default 5 %) of the rows are rejected, the batch fails and nothing of it
  is applied. A server that stops (even killed) while applying a batch leaves nothing of it;
  the next start marks the job failed, and a retry gives exactly the data of one complete run.
  Modules: ``mapping`` (the mapping language, type conversion), ``readers`` (CSV and JSON Lines
  read as streams, in bounded memory), ``uploads`` (checking and storing a file),
  ``batch_job`` (the job that processes a batch), ``batches`` (the batch resource: upload,
  reads, errors, retry).

A record: ``{"identities": [{"namespace", "id"}, ...], "attributes": {...}}`` for a profile
dataset (attributes nested as in the profile document of SPEC.md; ``null`` removes an attribute,
an object set to ``null`` removes everything under it), ``{"identities": [...], "event": {"id",
"type", "timestamp", <fields as in the profile document>}}`` for an event dataset.

Profile resolution is the identity graph's (cdp/identity/graph.py, docs/identity.md): identities
are normalised per namespace, a record's identities are linked, and a record whose identities
belong to several profiles merges them (its result says so in ``warnings``). A profile record may
carry a ``timestamp`` (when the source observed the values; default: ingestion time); its
attributes are kept per dataset with their provenance, and the profile shows them by the
sandbox's merge policy (cdp/identity/attributes.py). The records of a request — and the rows of a
batch, 1,000 at a time — are resolved and written set-wise, with the outcome of applying them one
after the other.

Limits (each enforced with a clear error, never by silent truncation):

=====================================  ==========================================================
record size (JSON)                      64 KiB — the record is rejected (``record_too_large``)
records per streaming request           1,000 — the request is refused, 413 ``batch_too_large``
identities per record                   20; namespaces: ecid, email, phone, crm_id, loyalty_id
                                        and the sandbox's custom ones; an id is 1 to 512 characters
events per profile                      100,000 — further events are rejected
                                        (``too_many_events``)
batch file size                         ``CDP_MAX_FILE_BYTES`` (default 1 GiB; at most what the
                                        database stores in one value: 1,000,000,000 bytes on
                                        SQLite, 1 GiB - 1 MiB on PostgreSQL) — 413
                                        ``file_too_large`` as soon as the upload passes it; the
                                        request-body limit (``CDP_MAX_BODY_BYTES``) does not apply
                                        to the file, only to the rest of the form
rows per batch file                     1,000,000 — the batch fails, nothing is applied
=====================================  ==========================================================
"""

RECORD_MAX_BYTES = 64 * 1024
MAX_RECORDS_PER_REQUEST = 1000
MAX_IDENTITIES_PER_RECORD = 20
MAX_IDENTITY_LENGTH = 512
MAX_EVENTS_PER_PROFILE = 100_000
MAX_BATCH_ROWS = 1_000_000
DEFAULT_ERROR_THRESHOLD = 0.05
NAMESPACES = ("ecid", "email", "phone", "crm_id", "loyalty_id")
