"""A small client of cdp's HTTP API for the demo and its loader: the standard library only
(``urllib``), so ``cdp demo`` needs nothing the service does not. Errors come back as
:class:`ApiError` with the service's structured error (code, message, details)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: Any):
        error = body.get("error") if isinstance(body, dict) else None
        self.status = status
        self.code = (error or {}).get("code", "http_error")
        self.message = (error or {}).get("message", str(body)[:300])
        self.details = (error or {}).get("details", {})
        super().__init__(f"{method} {path}: {status} {self.code}: {self.message}")


class Client:
    """JSON over HTTP with a key and a sandbox; every call is logged in ``calls`` (method, path, status)."""

    def __init__(self, base_url: str, key: str, *, sandbox: str = "prod", timeout: float = 120):
        self.base = base_url.rstrip("/")
        self.key = key
        self.sandbox = sandbox
        self.timeout = timeout
        self.calls: list[tuple[str, str, int]] = []

    def in_sandbox(self, sandbox: str) -> "Client":
        other = Client(self.base, self.key, sandbox=sandbox, timeout=self.timeout)
        other.calls = self.calls
        return other

    def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
                content_type: str | None = None, params: dict | None = None) -> Any:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Authorization": f"Bearer {self.key}", "X-Sandbox": self.sandbox, "Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        self.calls.append((method, path, status))
        body = json.loads(text) if text.strip() else None
        if status >= 400:
            raise ApiError(status, method, path, body)
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None} or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def upload(self, path: str, *, filename: str, content: bytes, fields: dict[str, str]) -> Any:
        """A multipart/form-data POST: ``fields`` as text parts, ``content`` as the part ``file``."""
        boundary = f"cdp-demo-{uuid.uuid4().hex}"
        parts = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", path, data=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")

    def has_paths(self, *paths: str) -> bool:
        """Whether the service's OpenAPI document has every one of ``paths`` (what this cdp can do)."""
        served = self.get("/openapi.json").get("paths", {})
        return all(path in served for path in paths)

    def wait(self, path: str, *, done: Any, timeout: float = 300, every: float = 0.1) -> Any:
        """GET ``path`` until ``done(answer)``; the last answer (TimeoutError past ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(path)
            if done(answer):
                return answer
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not finish within {timeout:.0f} s: {answer}")
            time.sleep(every)

