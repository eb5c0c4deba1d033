"""A loopback ComfyUI-Distributed cluster: one master and N workers, each a ComfyUI 0.3.75 server.

ComfyUI-Distributed (robertvoy, Apache-2.0) is not a dependency of this pack and no code of it is in
this repository: the tests, the benchmark and the UI build unpack an unmodified snapshot into each
server's ``custom_nodes/`` and only *configure* it (its ``gpu_config.json``), as a user would. The
snapshot is looked for in ``$BLENDED_VENDOR_DIR`` or ``<repository>/../shared/vendor``.

Every server is started in its own process group and stopped with it (``Cluster.stop``), so a test
that fails half-way leaves nothing running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path

from scripts.engine.comfy_engine import REPO, ComfyServer

# Needs the ComfyUI-Distributed pack, so it lives apart from workflows/api (whose graphs all have UI twins
# built from the core frontend's node list); ComfyUI's frontend opens it as an API-format file.
TEMPLATE = REPO / "workflows" / "distributed" / "blended_distributed_best_of_n.api.json"
LATENT_TEMPLATE = TEMPLATE.with_name("blended_latent_distributed_best_of_n.api.json")  # the user's checkpoint
SNAPSHOT = "ComfyUI-Distributed-a91f9fb.tar.gz"  # v1.4.4, commit a91f9fb (2026-04-08)
PACK = "ComfyUI-Distributed"


def template(path: Path = TEMPLATE) -> dict:
    """A shipped best-of-N graph (the pixel one unless ``path`` says otherwise), a fresh copy per call."""
    return json.loads(Path(path).read_text())


def vendor_dir() -> Path:
    return Path(os.environ.get("BLENDED_VENDOR_DIR") or REPO.parent / "shared" / "vendor")


def snapshot() -> Path | None:
    """The vendored archive, or None when this checkout has none next to it."""
    path = vendor_dir() / SNAPSHOT
    return path if path.is_file() else None


def install(base: Path, archive: Path) -> Path:
    """Unpack the snapshot into ``base/custom_nodes/ComfyUI-Distributed`` (as a ``git clone`` there would)."""
    dest = Path(base) / "custom_nodes" / PACK
    if not (dest / "__init__.py").is_file():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/", 1)[0] == PACK]
            tar.extractall(Path(base) / "custom_nodes", members=members, filter="data")
    return dest


def write_config(pack_dir: Path, workers: list[dict], timeout_s: int) -> Path:
    """The master's gpu_config.json: the workers by id, host and port; ``worker_timeout_seconds`` is
    how long its collector waits without hearing from a worker before probing it."""
    config = {
        "master": {"host": "127.0.0.1"},
        "workers": [{"id": w["id"], "name": w["id"], "host": "127.0.0.1", "port": w["port"], "type": "local",
                     "enabled": True} for w in workers],
        "settings": {"auto_launch_workers": False, "stop_workers_on_master_exit": False,
                     "worker_timeout_seconds": int(timeout_s), "websocket_orchestration": True},
    }
    path = Path(pack_dir) / "gpu_config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


class GroupServer(ComfyServer):
    """A ComfyServer in its own process group: ``kill`` ends it and anything it started."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, new_session=True, **kwargs)

    def kill(self):
        """SIGKILL the whole group: a worker that dies mid-run, without any goodbye to the master."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()


class Cluster:
    """``master`` plus ``workers`` (ids w1, w2, ...), started one after the other."""

    def __init__(self, master: GroupServer, workers: list[GroupServer]):
        self.master, self.workers = master, workers
        self.worker_ids = [f"w{i + 1}" for i in range(len(workers))]

    def stop(self):
        for server in [*self.workers, self.master]:
            try:
                server.stop()
            except ProcessLookupError:
                pass

    def queue(self, graph: dict, worker_ids: list[str] | None = None, client_id: str = "blended-distributed") -> dict:
        """POST the graph to the master's /distributed/queue, as its UI's Queue button does."""
        ids = self.worker_ids if worker_ids is None else worker_ids
        status, body = self.master.post("/distributed/queue", {"prompt": graph, "enabled_worker_ids": ids,
                                                               "client_id": client_id}, timeout=120)
        if status != 200:
            raise RuntimeError(f"/distributed/queue -> HTTP {status}: {body}")
        return body


@contextmanager
def cluster(root: Path, prepare, workers: int = 2, timeout_s: int = 20, env: dict | None = None):
    """Start a master and ``workers`` workers under ``root``; ``prepare(base)`` fills a server's base
    directory (pack link, models, inputs) and returns it. Yields a Cluster; stops it on exit."""
    from scripts.engine.comfy_engine import free_port, prepare_engine

    archive = snapshot()
    if archive is None:
        raise FileNotFoundError(f"{SNAPSHOT} is not in {vendor_dir()}")
    root = Path(root)
    engine = prepare_engine(root / "ComfyUI")
    env = dict(os.environ if env is None else env)
    ports = [free_port() for _ in range(workers)]
    servers: list[GroupServer] = []
    started: list[GroupServer] = []
    try:
        for i, port in enumerate(ports):
            base = prepare(root / f"worker{i + 1}")
            install(base, archive)
            # a worker: no signal handlers, no launching of further workers (ComfyUI-Distributed's own flag)
            servers.append(GroupServer(engine, base, port=port, env=dict(env, COMFYUI_IS_WORKER="1"),
                                       log_path=root / f"worker{i + 1}.log", cpu=True))
        base = prepare(root / "master")
        write_config(install(base, archive), [{"id": f"w{i + 1}", "port": p} for i, p in enumerate(ports)], timeout_s)
        master = GroupServer(engine, base, env=env, log_path=root / "master.log", cpu=True)
        for server in [*servers, master]:
            started.append(server)
            server.start()
        yield Cluster(master, servers)
    finally:
        for server in reversed(started):
            try:
                server.stop()
            except ProcessLookupError:
                pass


def wait_running(server: ComfyServer, timeout: float = 120) -> None:
    """Until ``server`` is executing a prompt (its /queue lists one as running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.running():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{server.url} did not start a prompt within {timeout:.0f} s")
