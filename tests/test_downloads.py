"""Downloads a user can see: progress at every chunk, resume after an interruption, the SHA-256
checked over the whole file (resumed part included) before it gets its real name. Served by a
local HTTP server that honours Range requests, as the real hosts do."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from blended import downloads as weights
from blended.errors import CheckpointError

PAYLOAD = bytes(range(256)) * 12_000  # 3 MB: several 1 MB chunks


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = PAYLOAD
    ranges = True
    served: list = []  # (start, bytes sent) per request

    def do_GET(self):  # noqa: N802
        start = 0
        header = self.headers.get("Range")
        if header and self.ranges:
            start = int(header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # Recorded when answered, not when the write ends: after a Cancel the first response can still
        # be draining into the closed socket while the resumed request is served (seen once in CI).
        type(self).served.append((start, len(body)))
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    handler = type("Handler", (_Handler,), {"served": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_port}/weights.pt"
    httpd.shutdown()
    httpd.server_close()


def entry_for(url: str, **overrides) -> weights.WeightFile:
    fields = dict(filename="weights.pt", subfolder="blended_diffusion", url=url, description="test",
                  size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    fields.update(overrides)
    return weights.WeightFile(**fields)


class Cancelled(Exception):
    pass


def test_progress_reaches_the_total(server, tmp_path):
    _, url = server
    seen = []
    path = weights.ensure_file(entry_for(url), tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == PAYLOAD
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 4


def test_cancelled_download_resumes_where_it_stopped(server, tmp_path):
    handler, url = server

    def cancel_after_a_megabyte(done, total):
        if done >= 1 << 20:
            raise Cancelled

    with pytest.raises(Cancelled):
        weights.ensure_file(entry_for(url), tmp_path, progress=cancel_after_a_megabyte)
    part = tmp_path / "weights.pt.part"
    kept = part.stat().st_size
    assert not (tmp_path / "weights.pt").exists() and kept >= 1 << 20
    path = weights.ensure_file(entry_for(url), tmp_path)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert handler.served[-1] == (kept, len(PAYLOAD) - kept)  # only the rest was fetched


def test_server_without_ranges_starts_over(server, tmp_path):
    handler, url = server
    handler.ranges = False
    (tmp_path / "weights.pt.part").write_bytes(PAYLOAD[:5000])
    path = weights.ensure_file(entry_for(url), tmp_path)
    assert path.read_bytes() == PAYLOAD and handler.served == [(0, len(PAYLOAD))]


def test_a_corrupt_part_fails_the_hash_and_is_deleted(server, tmp_path):
    _, url = server
    (tmp_path / "weights.pt.part").write_bytes(b"\0" * 5000)  # wrong bytes; the rest is resumed
    with pytest.raises(CheckpointError, match="SHA-256.*corrupt and was deleted"):
        weights.ensure_file(entry_for(url), tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert weights.ensure_file(entry_for(url), tmp_path).read_bytes() == PAYLOAD  # the next try is clean


def test_a_dropped_connection_says_the_part_is_kept(server, tmp_path):
    handler, url = server
    handler.payload = PAYLOAD[: len(PAYLOAD) // 2]  # the server stops half way
    with pytest.raises(CheckpointError, match="ended after .* bytes instead of"):
        weights.ensure_file(entry_for(url), tmp_path)
    assert (tmp_path / "weights.pt.part").stat().st_size == len(PAYLOAD) // 2
    handler.payload = PAYLOAD
    assert weights.ensure_file(entry_for(url), tmp_path).read_bytes() == PAYLOAD


def test_unreachable_host_keeps_the_part_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)
    (tmp_path / "weights.pt.part").write_bytes(PAYLOAD[:300_000])
    entry = entry_for("http://127.0.0.1:9/weights.pt")  # discard port: connection refused
    with pytest.raises(CheckpointError) as e:
        weights.ensure_file(entry, tmp_path)
    assert "download failed" in str(e.value) and "kept in" in str(e.value) and "resumes" in str(e.value)
    assert (tmp_path / "weights.pt.part").stat().st_size == 300_000


def test_offline_message_is_unchanged_for_the_clip_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDED_OFFLINE", "1")
    with pytest.raises(CheckpointError) as e:
        weights.ensure_file(weights.CLIP_VIT_B16, tmp_path / "blended_clip")
    msg = str(e.value)
    assert "ViT-B-16.pt" in msg and weights.CLIP_VIT_B16.url in msg and "models/blended_clip/" in msg
    assert weights.CLIP_VIT_B16.sha256 in weights.CLIP_VIT_B16.url  # OpenAI names the file by its hash
