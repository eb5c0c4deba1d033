"""Soak benchmark: one ComfyUI server, many latent edits back to back; what the server keeps.

    python -m benchmarks.bench_soak [--edits 100] [--more 20] [--warmup 5] [--checkpoint sd15.safetensors]

One server (the engine the tests use, started by ``scripts/engine/comfy_engine.py``) with a random
SD1.5 checkpoint in the real layout (``tests.support.sd15_fixture``; built in a temp dir unless
``--checkpoint`` is given) and the tiny CLIP of the tests. Each edit is the shipped latent template
``Blended - SD1.5 or SDXL edit`` at a 64 px crop, 2 steps, batch 2, 2 reconstruction iterations,
ranked by the CLIP criterion (its reward models are skipped offline, as shipped), top 1 saved; only
the seed changes (``tests/support/soak.py``).

1. ``--warmup`` edits, then the server's RSS, open descriptors, threads and temporary files.
2. ``--edits`` edits queued at once; the same figures again (RSS after ComfyUI's idle collection).
3. ``--more`` edits queued at once, the middle one a 1000-step edit cancelled (POST /interrupt) while it
   samples: it must end interrupted and every edit queued after it complete.
4. ComfyUI's "free memory" request (POST /free, unload_models + free_memory), then the RSS again.

Reports the growth over step 2 (RSS) and over steps 2-3 (descriptors, threads), the temporary files
left, and the RSS after step 4 above the RSS of the freshly started server. The RSS in the last line
is the anonymous part (``RssAnon``: what the process allocated); the file-backed part (libraries, the
memory-mapped checkpoint) is printed too but left out, because the kernel drops and reloads those pages
with the machine's memory pressure: in the first full run it fell by 350 MB during the 100 edits.
Exits non-zero when an edit fails or the queue does not go on after the cancel; the figures
themselves are only printed. The last line is always

    soak: rss_growth_mb=<x> fds_growth=<n> threads_growth=<n> after_free_mb=<x>
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from scripts.engine.comfy_engine import ComfyServer, prepare_base, prepare_engine
from tests.support import soak

IDLE_GC_S = 12.0  # ComfyUI collects garbage 10 s after the last prompt; measure RSS after that


def build_server(root: Path, checkpoint: Path | None) -> tuple[ComfyServer, dict[str, str]]:
    """A server base with the SD1.5 checkpoint, the tiny CLIP and the example inputs; its own TMPDIR so
    its temporary files can be told from other processes'."""
    from tests.support.comfy_harness import write_inputs
    from tests.support.sd15_fixture import write_random_sd15
    from tests.support.tiny_clip import save_tiny_clip

    engine = prepare_engine(root / "ComfyUI")
    base = prepare_base(root / "base")
    ckpt = base / "models" / "checkpoints" / "random_sd15.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        ckpt.symlink_to(Path(checkpoint).resolve())
    else:
        write_random_sd15(ckpt)
    save_tiny_clip(base / "models" / "blended_clip" / "tiny_clip.safetensors", seed=0)
    write_inputs(base / "input")
    (root / "tmp").mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", BLENDED_OFFLINE="1", TMPDIR=str(root / "tmp"),
               TORCH_HOME=str(root / "torch_home"))
    server = ComfyServer(engine, base, env=env, log_path=root / "comfyui.log", cpu=True)
    return server, {"sd15": ckpt.name, "clip": "tiny_clip.safetensors"}


def check(entries: list[dict], what: str) -> None:
    bad = soak.failures(entries)
    if bad:
        raise SystemExit(f"{len(bad)} of {len(entries)} {what} did not complete: {bad[:3]}")


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label}: {time.perf_counter() - start:.1f} s", flush=True)
    return out


def report(label: str, s: soak.Sample) -> None:
    print(f"{label:<28} rss {s.rss_mb:8.1f} MB (anon {s.anon_mb:7.1f}, files {s.file_mb:6.1f})  fds {s.fds:4d}  "
          f"threads {s.threads:3d}", flush=True)


def soak_run(server: ComfyServer, names: dict[str, str], args) -> None:
    pid = server.proc.pid
    soak.settle(server)
    started = soak.sample(pid)
    report("server started", started)
    warm_seeds, seeds = range(1, 1 + args.warmup), range(1 + args.warmup, 1 + args.warmup + args.edits)
    more_seeds = range(seeds.stop, seeds.stop + args.more)  # every edit its own seed: nothing is cached
    check(timed(f"{args.warmup} warm-up edits", lambda: soak.run_edits(server, names, warm_seeds)),
          "warm-up edits")
    soak.settle(server, IDLE_GC_S)
    warm, temps = soak.sample(pid), soak.temp_entries(server)
    report("after warm-up", warm)
    trace = progress_trace(pid, args.edits)
    check(timed(f"{args.edits} edits", lambda: soak.run_edits(server, names, seeds, on_done=trace)), "edits")
    soak.settle(server, IDLE_GC_S)
    after = soak.sample(pid)
    report(f"after {args.edits} edits", after)
    run = timed(f"{args.more} edits with a cancel",
                lambda: soak.run_with_cancel(server, names, more_seeds, args.more // 2))
    check_cancel(run)
    soak.settle(server, IDLE_GC_S)
    end = soak.sample(pid)
    report(f"after {args.more} more", end)
    left = sorted(soak.temp_entries(server) - temps)
    print(f"temporary files left: {len(left)} {left[:5]} (in {[str(d) for d in soak.temp_dirs(server)]})")
    soak.free_models(server)
    soak.settle(server, IDLE_GC_S)
    freed = soak.sample(pid)
    report("after POST /free", freed)
    print(f"soak: rss_growth_mb={after.anon_mb - warm.anon_mb:.1f} fds_growth={max(after.fds, end.fds) - warm.fds} "
          f"threads_growth={max(after.threads, end.threads) - warm.threads} "
          f"after_free_mb={freed.anon_mb - started.anon_mb:.1f}")


def progress_trace(pid: int, edits: int):
    """Print the anonymous RSS after every quarter of the edits, while the next edit runs (so it
    includes one edit's working memory): a leak grows steadily, the allocator's pools level off."""
    marks = {max(1, edits * q // 4) for q in (1, 2, 3)}

    def on_done(n: int) -> None:
        if n in marks:
            report(f"  {n} edits done (one running)", soak.sample(pid))

    return on_done


def check_cancel(run: soak.CancelRun) -> None:
    if not soak.was_interrupted(run.cancelled):
        raise SystemExit(f"the cancelled edit was not interrupted: {run.cancelled.get('status')}")
    check(run.before, "edits queued before the cancelled one")
    check(run.after, "edits queued after the cancelled one")
    print(f"cancelled edit interrupted; {len(run.after)} edits queued after it completed")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--more", type=int, default=20, help="edits queued after, the middle one cancelled")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path, help="a random SD1.5 checkpoint to reuse (else one is built)")
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; latent template at {soak.RESOLUTION} px, "
          f"{soak.STEPS} steps, batch {soak.BATCH}, {soak.ITERATIONS} reconstruction iterations, CLIP ranking",
          flush=True)
    root = Path(tempfile.mkdtemp(prefix="blended-soak-"))
    try:
        server, names = build_server(root, args.checkpoint)
        with server:
            soak_run(server, names, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
