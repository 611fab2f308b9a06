"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

import re

from tests.api.conftest import assert_error


def test_healthz_needs_no_key(api):
    response = api.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] in ("sqlite", "postgresql") and body["version"]


def test_docs_need_no_key(api):
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/redoc").status_code == 200
    assert api.client.get("/openapi.json").status_code == 200


def test_docs_pages_load_only_files_the_service_serves(api):
    """No CDN: /docs must work on a machine without internet."""
    for page, assets in (("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
                         ("/redoc", {"redoc.standalone.js", "favicon.png"})):
        html = api.client.get(page).text
        assert "//" not in html.replace("http://www.w3.org", ""), f"{page} names another origin:\n{html}"
        loaded = set(re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html))
        loaded |= set(re.findall(r"url:\s*'([^']+)'", html))  # the OpenAPI document, for Swagger UI
        assert {path.rsplit("/", 1)[-1] for path in loaded} >= assets, (page, loaded)
        for path in loaded:
            assert path.startswith("/"), (page, path)
            response = api.client.get(path)
            assert response.status_code == 200 and len(response.content) > 100, (page, path)
        if page == "/docs":
            assert "/openapi.json" in loaded and '"validatorUrl": null' in html
    script = api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"] and b"isOAS31" in script.content  # Swagger UI 5


def test_openapi_lists_every_v1_route_with_its_roles(api):
    from cdp.api.deps import endpoints

    document = api.client.get("/openapi.json").json()
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {(e.method, e.path) for e in endpoints(api.app)}
    v1 = {pair for pair in served if pair[1].startswith("/v1/")}
    assert len(v1) >= 13 and v1 <= listed
    assert all(path.startswith(("/v1/", "/sources/segment/v1/")) or path in ("/healthz", "/metrics")
               for _method, path in listed)
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    # the analytics SDKs' tracking API (cdp/sources): a source's write key as basic auth
    assert document["components"]["securitySchemes"]["WriteKey"]["scheme"] == "basic"
    tracking = [item["post"] for path, item in document["paths"].items() if path.startswith("/sources/segment/v1/")]
    assert len(tracking) == 8 and all(o["security"] == [{"WriteKey": []}] for o in tracking)
    for endpoint in endpoints(api.app):
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        expected = sorted(r.value for r in endpoint.roles) if endpoint.roles else []
        assert sorted(operation["x-roles"]) == expected, (endpoint.method, endpoint.path)
        if endpoint.roles:
            assert operation["security"] == [{"ApiKey": []}]
            assert any(p["name"] == "X-Sandbox" and p["in"] == "header" for p in operation["parameters"])
            assert operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ErrorResponse")


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        match = re.fullmatch(re.escape(name) + r"\{(.*)\} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_metrics_count_requests_with_route_templates(api):
    created = api.post("/v1/datasets", json={"name": "m", "kind": "event"}).json()
    api.get(f"/v1/datasets/{created['id']}")
    api.get("/v1/datasets/999999")
    api.get("/v1/no-such-thing")
    assert_error(api.client.get("/metrics"), 401, "missing_api_key")
    response = api.get("/metrics", role="reader")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _sample(text, "cdp_http_requests_total", method="GET", route="/v1/datasets/{dataset_id}", status="200") >= 1
    assert _sample(text, "cdp_http_requests_total", method="GET", route="/v1/datasets/{dataset_id}", status="404") >= 1
    assert _sample(text, "cdp_http_requests_total", method="POST", route="/v1/datasets", status="201") >= 1
    assert _sample(text, "cdp_http_requests_total", method="GET", route="unmatched", status="404") >= 1
    assert _sample(text, "cdp_http_request_duration_seconds_count", method="POST", route="/v1/datasets") >= 1
    assert "/v1/datasets/" + str(created["id"]) not in text
    for name in ("cdp_ingested_records_total", "cdp_rejected_records_total"):
        assert f"# TYPE {name} counter" in text


def test_ingestion_counters(api):
    metrics = api.app.state.metrics
    metrics.ingested(api.sandbox, "event", 3)
    metrics.rejected(api.sandbox, "event")
    text = api.get("/metrics").text
    assert _sample(text, "cdp_ingested_records_total", sandbox=api.sandbox, kind="event") == 3
    assert _sample(text, "cdp_rejected_records_total", sandbox=api.sandbox, kind="event") == 1
