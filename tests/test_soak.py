"""The soak benchmark's mechanics, short: edits queued back to back on the session's server, one of
them cancelled, leave the server as they found it.

Ten latent edits (the shipped template at a 64 px crop, 2 steps, batch 2, ranked by the CLIP
criterion; ``tests/support/soak.py``) and a long one cancelled in the middle of the queue. A leak
shows per edit: a descriptor or thread kept by each edit would add ten, a temporary file each ten
files. The resident-memory figure needs many more edits and is ``benchmarks/bench_soak.py``'s job.
"""

from __future__ import annotations

from tests.support import soak

EDITS, CANCEL_AT = 10, 5  # the cancelled edit has five edits queued before it and five after
SEED = 9000  # seeds no other test uses, so no edit is served from ComfyUI's cache
SLACK = 2  # descriptors or threads the server may open for its own reasons (fewer than one per edit)


def test_ten_edits_back_to_back_all_complete_with_descriptors_flat_and_no_temporary_files(comfy_sd15):
    server = comfy_sd15.server
    pid = server.proc.pid
    assert not soak.failures(soak.run_edits(server, comfy_sd15.names, range(SEED, SEED + 1)))  # warm-up
    soak.settle(server)
    before, temps = soak.sample(pid), soak.temp_entries(server)

    seeds = range(SEED + 1, SEED + 2 + EDITS)
    run = soak.run_with_cancel(server, comfy_sd15.names, seeds, CANCEL_AT)
    soak.settle(server)
    after = soak.sample(pid)

    assert soak.was_interrupted(run.cancelled), run.cancelled.get("status")
    assert len(run.before) + len(run.after) == EDITS and len(run.after) == EDITS - CANCEL_AT
    assert not soak.failures(run.before + run.after), soak.failures(run.before + run.after)
    assert after.fds <= before.fds + SLACK, f"open descriptors {before.fds} -> {after.fds} over {EDITS} edits"
    assert after.threads <= before.threads + SLACK, f"threads {before.threads} -> {after.threads}"
    assert not soak.temp_entries(server) - temps, sorted(soak.temp_entries(server) - temps)
    assert server.alive()
