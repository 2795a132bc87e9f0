"""The client side of an image upload (used by ``masterline images upload`` and the
benchmark): hash the file, declare it, send it with tus, resume after a cut.

Resuming: the upload URL and image id are kept in a small state file named by the
file's sha256 under ``$XDG_CACHE_HOME/masterline/uploads``, so re-running the same
command after Ctrl-C, a crash or a network cut asks the server for its offset (HEAD) and
sends the rest. A cache of (path, size, mtime) → sha256 spares re-hashing a large file.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.client import ApiClient, ApiError
from core.errors import MasterlineError, Unavailable
from images.models import ImageFormat
from images.stream import Digests
from images.tus import TUS_VERSION

CHUNK = 1024 * 1024
Progress = Callable[[int], None]
"""Called with the number of bytes just processed."""


class UploadInterrupted(MasterlineError):
    status_code = 503
    exit_code = 7
    title = "Upload interrupted"


def state_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "masterline" / "uploads"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    raw_size: int
    raw_sha256: str


def digest_file(path: Path, fmt: ImageFormat, progress: Progress | None = None) -> FileDigest:
    """SHA-256 and size of the file (and of its decompressed bytes for raw+zstd), from a
    cache when the file has not changed since it was last hashed."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{fmt.value}"
    cache_path = state_dir() / "hashes.json"
    cache = _read_json(cache_path)
    if key in cache:
        if progress:
            progress(st.st_size)
        return FileDigest(**cache[key])
    digests = Digests(fmt)
    with open(path, "rb") as f:
        while block := f.read(8 * CHUNK):
            digests.update(block)
            if progress:
                progress(len(block))
    if digests.corrupt:
        raise MasterlineError(f"{path.name}: {digests.corrupt}")
    raw_size, raw_sha = digests.raw_result()
    result = FileDigest(digests.offset, digests.stored.hexdigest(), raw_size, raw_sha)
    cache[key] = result.__dict__
    while len(cache) > 100:
        cache.pop(next(iter(cache)))
    _write_json(cache_path, cache)
    return result


def _http(client: ApiClient) -> httpx.Client:
    # tus reads status codes and headers itself.
    return client.http


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200] or response.reason_phrase}
    raise ApiError(response.status_code, body if isinstance(body, dict) else {})


@dataclass
class UploadRequest:
    path: Path
    name: str
    version: str
    os_family: str
    format: ImageFormat
    compatible: list[dict[str, str]]
    notes: str | None
    client_code: str | None


@dataclass
class UploadOutcome:
    image: dict[str, Any]
    resumed_from: int
    already: bool


class Uploader:
    """Declare-then-tus upload with resume. ``on_hash``/``on_send`` report progress."""

    def __init__(
        self,
        client: ApiClient,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        on_send_start: Callable[[int, int], None] | None = None,
        on_send: Progress | None = None,
    ) -> None:
        self.client = client
        self.retries = retries
        self.backoff = backoff
        self.on_send_start = on_send_start
        self.on_send = on_send

    def _state_path(self, sha256: str) -> Path:
        return state_dir() / f"{sha256}.json"

    def _find_or_declare(self, req: UploadRequest, d: FileDigest) -> dict[str, Any]:
        params: dict[str, Any] = {"name": req.name, "version": req.version}
        if req.client_code:
            params["client"] = req.client_code
        found = self.client.get("/images", params=params)["items"]
        if found:
            image: dict[str, Any] = found[0]
            if image["sha256"] != d.sha256:
                raise MasterlineError(
                    f"image {req.name} {req.version} exists already with other content "
                    f"(sha256 {image['sha256'][:12]}…); versions are immutable: use a new "
                    "version"
                )
            return image
        body: dict[str, Any] = {
            "name": req.name,
            "version": req.version,
            "os_family": req.os_family,
            "format": req.format.value,
            "size": d.size,
            "sha256": d.sha256,
            "compatible_models": req.compatible,
            "notes": req.notes,
        }
        if req.format is ImageFormat.RAW_ZSTD:
            body.update(raw_size=d.raw_size, raw_sha256=d.raw_sha256)
        if req.client_code:
            body["client_code"] = req.client_code
        declared: dict[str, Any] = self.client.post("/images", json=body)
        return declared

    def _offset(self, url: str) -> int | None:
        r = _http(self.client).head(url, headers={"Tus-Resumable": TUS_VERSION})
        if r.status_code == 404:
            return None
        _raise_for(r)
        return int(r.headers["Upload-Offset"])

    def _create(self, image: dict[str, Any]) -> str:
        meta = "image_id " + base64.b64encode(str(image["id"]).encode()).decode()
        r = _http(self.client).post(
            "/uploads",
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(image["size"]),
                "Upload-Metadata": meta,
            },
        )
        _raise_for(r)
        return str(r.headers["Location"])

    def _send(self, url: str, path: Path, offset: int, size: int) -> int:
        def body() -> Iterator[bytes]:
            with open(path, "rb") as f:
                f.seek(offset)
                while chunk := f.read(CHUNK):
                    yield chunk
                    if self.on_send:
                        self.on_send(len(chunk))

        r = _http(self.client).patch(
            url,
            content=body(),
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(size - offset),
            },
            timeout=httpx.Timeout(60.0, read=900.0),
        )
        _raise_for(r)
        return int(r.headers["Upload-Offset"])

    def upload(self, req: UploadRequest, d: FileDigest) -> UploadOutcome:
        """:raises UploadInterrupted: still failing after the retries (state kept: run
        again to resume). :raises ApiError: the server refused (mismatch, tenancy…)."""
        state_path = self._state_path(d.sha256)
        state = _read_json(state_path)
        if (
            state.get("api_url") != self.client.base_url
            or state.get("name") != req.name
            or state.get("version") != req.version
        ):
            state = {}
        image = self._find_or_declare(req, d)
        if image["status"] in ("available", "retired"):
            state_path.unlink(missing_ok=True)
            return UploadOutcome(image, 0, already=True)
        if state.get("image_id") != image["id"]:
            state = {
                "api_url": self.client.base_url,
                "name": req.name,
                "version": req.version,
                "image_id": image["id"],
            }
        if not state.get("upload_url") and image.get("upload_url"):
            # No state here (another machine, state lost): the server knows the upload.
            state["upload_url"] = image["upload_url"]
        _write_json(state_path, state)
        resumed_from = 0
        attempt = 0
        while True:
            try:
                url = state.get("upload_url")
                offset = self._offset(url) if url else None
                if offset is None:
                    url = self._create(image)
                    offset = 0
                    state["upload_url"] = url
                    _write_json(state_path, state)
                assert url is not None
                if offset > 0:
                    resumed_from = offset
                if self.on_send_start:
                    self.on_send_start(offset, d.size)
                final = self._send(url, req.path, offset, d.size)
                if final >= d.size:
                    break
            except (httpx.TransportError, Unavailable) as e:
                error: Exception = e
            except ApiError as e:
                if e.status_code not in (409, 423, 500, 502, 503, 504):
                    if e.status_code in (404, 422):
                        state_path.unlink(missing_ok=True)
                    raise
                error = e
            attempt += 1
            if attempt > self.retries:
                raise UploadInterrupted(
                    f"upload interrupted ({type(error).__name__}: {error}); run the same "
                    "command again to resume"
                ) from error
            time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)))
        state_path.unlink(missing_ok=True)
        done: dict[str, Any] = self.client.get(f"/images/{image['id']}")
        return UploadOutcome(done, resumed_from, already=False)
