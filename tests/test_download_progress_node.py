"""The loaders' download progress goes to ComfyUI's progress bar (the node's bar in the UI) and
ComfyUI's Cancel stops a download, keeping its part for the next run. nodes/comfy_glue.py's
DownloadProgress, driven by a real download from a local HTTP server with ComfyUI's own
comfy.utils.ProgressBar hook and interrupt flag, in a subprocess (ComfyUI keeps global state)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from scripts.engine.comfy_engine import engine_packages_env, engine_source

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import hashlib, http.server, json, sys, threading
    from pathlib import Path
    engine, root, tmp = sys.argv[1:4]
    sys.path[:0] = [root]
    from tests.support import pack_import  # ours, imported before the engine's own tests/ package can shadow it
    sys.path[:0] = [engine]
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.model_management as mm
    import comfy.utils
    pack_import.register()
    from blended_diffusion_pack.nodes import comfy_glue
    from blended import downloads as weights

    payload = bytes(range(256)) * (3 * 4096)  # exactly 3 MiB
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(payload) - start))
            self.end_headers()
            self.wfile.write(payload[start:])
        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    entry = weights.WeightFile("w.pt", "blended_diffusion", f"http://127.0.0.1:{server.server_port}/w.pt", "test",
                               size=len(payload), sha256=hashlib.sha256(payload).hexdigest())

    bars = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: bars.append([value, total]))
    result = {}

    cancel_at_first_megabyte = comfy_glue.DownloadProgress()
    def progress(done, total):
        if done >= 1 << 20:
            mm.interrupt_current_processing(True)  # the user presses Cancel
        cancel_at_first_megabyte(done, total)
    try:
        weights.ensure_file(entry, tmp, progress=progress)
    except mm.InterruptProcessingException:
        result["cancelled"] = True
    result["part_after_cancel"] = (Path(tmp) / "w.pt.part").stat().st_size
    result["bars_before_cancel"] = list(bars)
    bars.clear()
    path = weights.ensure_file(entry, tmp, progress=comfy_glue.DownloadProgress())
    result["resumed_ok"] = path.read_bytes() == payload
    result["bars"] = bars
    print(json.dumps(result))
""")


def test_download_progress_reaches_the_node_bar_and_cancel_keeps_the_part(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(engine_source()), str(ROOT), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         # downloads on (loopback only); the engine's own packages (its layer) kept
                         env={"PATH": "/usr/bin:/bin", **engine_packages_env()})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["cancelled"] and result["part_after_cancel"] >= 1 << 20
    assert result["bars_before_cancel"] and all(total == 3 for _, total in result["bars_before_cancel"])
    assert result["resumed_ok"]
    values = [value for value, _ in result["bars"]]
    assert values == sorted(values) and result["bars"][-1] == [3, 3]  # MB of the whole file
