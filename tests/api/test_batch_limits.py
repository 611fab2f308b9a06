"""Uploads must not amplify (issue 11): what an error keeps of a rejected row is capped (and says
so), a line over the line limit is a rejected row — not read whole, not a failed batch — a page
of errors is bounded in bytes as well as in rows, and a real server processing a file with one
huge line stays within a bounded amount of memory, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tests.api.test_ingestion import _dataset
from tests.api.test_ingestion_batches import _upload, _wait

RAW_MAX_BYTES = 2048
MIB = 1024 * 1024
GOOD = {"identities": [{"namespace": "crm_id", "id": "C-1"}], "attributes": {"loyalty": {"tier": "gold"}}}


def _all_errors(api, batch_id) -> list[dict]:
    response = api.get(f"/v1/batches/{batch_id}/errors", params={"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _stored_raw_bytes(api, batch_id) -> list[int]:
    from cdp.storage.models import ingestion_errors

    with api.app.state.engine.connect() as connection:
        return [len(raw.encode()) for raw in connection.execute(
            sa.select(ingestion_errors.c.raw).where(ingestion_errors.c.batch_pk == batch_id)).scalars()]


def test_an_error_keeps_at_most_2_kib_of_its_raw_row_and_says_so(api):
    crm = _dataset(api, "profile")
    # under the line limit but far over what an error keeps: an unknown attribute with a long value
    wide = json.dumps({**GOOD, "attributes": {"notes": "é" * 100_000}}, ensure_ascii=False)
    huge = json.dumps({**GOOD, "attributes": {"notes": "x" * (3 * MIB)}})  # over the 1 MiB line limit
    lines = [json.dumps(GOOD), wide, "{not json", huge, json.dumps({**GOOD, "identities": [
        {"namespace": "crm_id", "id": "C-2"}]})]
    job = _wait(api, _upload(api, crm, "\n".join(lines) + "\n", "notes.jsonl", error_threshold=1)["id"])
    assert job["status"] == "succeeded", job
    assert (job["total_rows"], job["accepted_rows"], job["rejected_rows"]) == (5, 2, 3)
    assert (job["progress_rows"], job["progress_total_rows"], job["attempts"]) == (5, 5, 1)
    errors = {e["row_number"]: e for e in _all_errors(api, job["id"])}
    assert set(errors) == {2, 3, 4}
    for number in (2, 4):
        error = errors[number]
        assert error["raw_truncated"] is True and error["raw_bytes"] == len(lines[number - 1].encode()), number
        assert len(error["raw"].encode()) <= RAW_MAX_BYTES and lines[number - 1].startswith(error["raw"])
    assert errors[3] == {"row_number": 3, "column": None, "reason": errors[3]["reason"], "raw": "{not json",
                         "raw_truncated": False, "raw_bytes": 9}
    assert errors[4]["reason"] == (f"line too long: {len(huge):,} bytes, over the limit of 1,048,576 bytes per line; "
                                   f"nothing of it was read")
    # what the database holds is capped too
    assert max(_stored_raw_bytes(api, job["id"])) <= RAW_MAX_BYTES


def test_a_csv_line_over_the_limit_is_a_rejected_row(api):
    crm = _dataset(api, "profile")
    mapping = {"Id": "identity.crm_id", "Tier": "loyalty.tier", "Points": "loyalty.points"}
    long_line = "C-3,gold," + "9" * (MIB + 10)
    text = "\n".join(["Id,Tier,Points", "C-1,gold,10", "C-2,silver,many", long_line, "C-4,bronze,4"]) + "\n"
    job = _wait(api, _upload(api, crm, text, mapping=mapping, error_threshold=1)["id"])
    assert job["status"] == "succeeded", job
    assert (job["total_rows"], job["accepted_rows"], job["rejected_rows"]) == (4, 2, 2)
    errors = _all_errors(api, job["id"])
    assert [(e["row_number"], e["column"], e["raw_truncated"]) for e in errors] == [
        (3, "Points", False), (4, None, True)]
    assert errors[1]["reason"].startswith(f"line too long: {len(long_line):,} bytes")
    assert errors[1]["raw_bytes"] == len(long_line) and errors[1]["raw"].startswith("C-3,gold,999")


def test_errors_are_paged_by_bytes_as_well_as_rows(api, monkeypatch):
    from cdp.ingestion import batches

    monkeypatch.setattr(batches, "ERRORS_PAGE_BYTES", 20_000)
    crm = _dataset(api, "profile")
    bad = [json.dumps({**GOOD, "attributes": {"notes": f"{n}" + "x" * 3000}}) for n in range(30)]
    job = _wait(api, _upload(api, crm, "\n".join([json.dumps(GOOD), *bad]) + "\n", "notes.jsonl",
                             error_threshold=1)["id"])
    assert job["rejected_rows"] == 30, job
    pages, offset = [], 0
    while offset is not None:
        response = api.get(f"/v1/batches/{job['id']}/errors", params={"limit": 500, "offset": offset})
        assert response.status_code == 200 and len(response.content) <= 20_000 + 200, len(response.content)
        page = response.json()
        assert page["total"] == 30 and page["limit"] == 500 and page["offset"] == offset and page["items"]
        pages.append(page["items"])
        offset = page["next_offset"]
    assert len(pages) > 1 and all(len(items) < 30 for items in pages)
    assert [e["row_number"] for items in pages for e in items] == list(range(2, 32))
    # a row limit still cuts first when it is the smaller bound
    small = api.get(f"/v1/batches/{job['id']}/errors", params={"limit": 2}).json()
    assert len(small["items"]) == 2 and small["next_offset"] == 2
    # the download streams every error, the same ones
    download = api.get(f"/v1/batches/{job['id']}/errors", params={"format": "jsonl"})
    assert [json.loads(line) for line in download.text.splitlines()] == [e for items in pages for e in items]


# ---- a real server's memory ----------------------------------------------------------------------

def _status(pid: int, field: str) -> int:
    """A memory figure of a process from /proc, in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_server_processes_a_huge_line_in_bounded_memory(backend, request, sqlite_url_factory, tmp_path):
    from tests.api.test_server import KEY, Server

    url = sqlite_url_factory() if backend == "sqlite" else request.getfixturevalue("postgres_url_factory")()
    server = Server(url, tmp_path / "serve.log")
    try:
        [key] = KEY.findall(server.stderr)
        headers = {"Authorization": f"Bearer {key}"}
        crm = httpx.post(server.base + "/v1/datasets", headers=headers,
                         json={"name": "CRM", "kind": "profile"}).json()["id"]

        def run(content: bytes) -> dict:
            job = httpx.post(server.base + f"/v1/datasets/{crm}/batches", headers=headers, timeout=120,
                             files={"file": ("crm.jsonl", content)}, data={"error_threshold": "1"}).json()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = httpx.get(server.base + f"/v1/batches/{job['id']}", headers=headers).json()
                if job["status"] in ("succeeded", "failed"):
                    return job
                time.sleep(0.05)
            raise AssertionError(f"the batch did not finish within 120 s: {job}")

        good = json.dumps(GOOD).encode() + b"\n"
        assert run(good * 100)["status"] == "succeeded"  # warm-up: every module loaded, every pool filled
        pid = server.process.pid
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")  # the peak RSS starts again from now
        before = _status(pid, "VmRSS")
        line = b'{"identities": [{"namespace": "crm_id", "id": "C-9"}], "attributes": {"notes": "' + \
            b"x" * (64 * MIB) + b'"}}\n'
        job = run(good + line)
        peak = _status(pid, "VmHWM")
        assert (job["status"], job["accepted_rows"], job["rejected_rows"]) == ("succeeded", 1, 1), job
        # the file was 64 MiB: uploaded, stored and read in chunks of 1 MiB, never whole (measured:
        # about 11 MiB; before the fix, over 130 MiB)
        assert peak - before < 24 * MIB, f"the server grew by {(peak - before) / MIB:.0f} MiB"
        errors = httpx.get(server.base + f"/v1/batches/{job['id']}/errors", headers=headers)
        assert len(errors.content) < 5000 and errors.json()["items"][0]["raw_bytes"] == len(line) - 1
    finally:
        server.stop()
