"""What Blended Mask by DiffEdit costs, against one blended sampling run of as many steps as draws.

Same tiny random model (tests/support/latent_families.py), conditioning and CFG for both; progress
bars off. Each round runs both once, alternating which goes first, so load on a shared machine hits
both alike. Prints the model calls each made (through ComfyUI's public unet wrapper), the median time
of each and the ratio (median of the per-round ratios, with the middle half). DiffEdit with ``draws``
draws makes ``draws`` model calls of target and reference, as a CFG sampling run of ``draws`` steps
makes of positive and negative, so the ratio should sit near 1.

    .venv/bin/python -m benchmarks.bench_auto_mask [--families sd15,sdxl,flux-dev] [--draws 10] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin

import torch

from benchmarks.bench_latent_families import quartiles, sync


def bench_family(name: str, size: int, draws: int, rounds: int) -> str:
    from blended.latent.auto_mask import AutoMaskSettings
    from blended_diffusion_pack.nodes.auto_mask import find_mask
    from blended_diffusion_pack.nodes.latent_sampling import run_latent_sampler
    from tests.support.latent_families import build

    b = build(name, (size, size))
    f = b.family.factor
    source = torch.randn(b.latent_shape, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, size * f, size * f)
    mask[:, size * f // 4 : size * f * 3 // 4, size * f // 4 : size * f * 3 // 4] = 1
    cfg = 1.0 if b.family.guider == "basic" else 3.0
    calls = {"n": 0}
    model = b.model.clone()

    def wrapper(apply_model, a):
        calls["n"] += 1
        return apply_model(a["input"], a["timestep"], **a["c"])

    model.set_model_unet_function_wrapper(wrapper)
    settings = AutoMaskSettings(draws=draws)
    runs = {
        "auto mask": lambda: find_mask(model, b.positive, b.negative, {"samples": source}, 0, settings),
        "sampling": lambda: run_latent_sampler(model, b.positive, b.negative, {"samples": source}, mask, 0, draws,
                                               cfg, "euler", "simple", 1.0, 1, 16, 0.25),
    }
    times = {k: [] for k in runs}
    made = {}
    for fn in runs.values():
        fn()  # warm-up
    for r in range(rounds):
        for key in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            calls["n"] = 0
            sync()
            t = time.perf_counter()
            runs[key]()
            sync()
            times[key].append(time.perf_counter() - t)
            made[key] = calls["n"]
    ratios = [a / s for a, s in zip(times["auto mask"], times["sampling"])]
    lo, hi = quartiles(ratios)
    med = {k: statistics.median(v) for k, v in times.items()}
    return (f"| {name} | {size}x{size} | {draws} | {made['auto mask']} / {made['sampling']} | "
            f"{med['auto mask']:.3f} | {med['sampling']:.3f} | {statistics.median(ratios):.3f}x ({lo:.3f}-{hi:.3f}) |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="sd15,sdxl,flux-dev")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--size", type=int, default=16, help="latent cells per side")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from tests.support import pack_import

    pack_import.register()
    from tests.support.sd15_fixture import comfy_engine_path

    comfy_engine_path()
    import comfy.model_management as mm
    import comfy.utils

    comfy.utils.set_progress_bar_enabled(False)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} on {mm.get_torch_device()}, {torch.get_num_threads()} threads, "
          f"rounds {args.rounds}, sampling: euler / simple")
    print("| family | latent | draws = steps | model calls (auto mask / sampling) | auto mask s | sampling s | "
          "ratio, median (middle half) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.families.split(","):
        print(bench_family(name, args.size, args.draws, args.rounds), flush=True)


if __name__ == "__main__":
    main()
