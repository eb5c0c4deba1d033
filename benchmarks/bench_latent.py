"""Benchmark: seconds per edit, latent path (Blended Latent Diffusion on SD1.5) vs the pixel path
(Blended Diffusion, ADM-256 + CLIP ViT-B/16), and the background reconstruction's cost per image
against the 30-step sampling of the same crop. Prints figures measured in one run; never asserts on
time. The last line is always

    reconstruction: time_ratio=<recon s / 30-step sampling s> outside_reduction=<plain / tuned squared error
    outside> inside_mse=<tuned vs plain decode, inside the mask>

    python -m benchmarks.bench_latent [--size 256] [--steps 3] [--checkpoint sd15.safetensors] [--skip-pixel]

Random weights at the real architectures' sizes (speed does not depend on the values): a random SD1.5
single-file checkpoint (built in a temp dir unless --checkpoint is given) loaded by ComfyUI's own
loader and sampled through ComfyUI's sampling code exactly as the Blended Latent Sampler does; the
ADM-256 UNet and ViT-B/16 of the paper through ``blended.pixel.sampler``. Both edit one image of
``--size`` px (the ADM's own size is 256; SD1.5's is 512). Each path runs ``--steps`` steps (after a
warm-up); a whole edit is reported as one-off costs + the measured time per step x the step count each
path uses by default (latent: 30 steps; pixel: 75 guided steps = 100 - skip 25). The reconstruction
runs once per seam mode with the node's defaults (its stopping rule decides the steps), timed whole,
on the shipped example photo (real image statistics; sampling time does not depend on the content)
with the central half as the mask and a random latent inside it as the edit. Its errors: squared
error to the source in the band outside the mask the node tunes on (plain decode / tuned), and the
mean squared difference inside the mask between the tuned and the plain decode (0..1 units).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

LATENT_STEPS, PIXEL_STEPS = 30, 75


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def clock(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def scene(size):
    from test_latent_engine import example_photo

    image = example_photo(size)
    mask = torch.zeros(1, size, size)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return image, mask


def latent_path(ckpt: Path, size: int, steps: int, device) -> dict:
    from tests.support.sd15_fixture import comfy_engine_path

    comfy_engine_path()
    import comfy.sd

    from blended.latent.blend import cover_mask
    from blended.latent.reconstruct import SEAM_MODES, ReconstructSettings
    from tests.support import pack_import

    pack_import.register()
    from blended_diffusion_pack.nodes.latent_nodes import reconstruct_images, run_latent_sampler

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a bowl of cherries"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    image, mask = scene(size)

    def sample(n):
        return run_latent_sampler(model, pos, neg, {"samples": latent}, mask, 0, n, 7.5, "euler", "normal", 1.0, 1, 16,
                                  0.25)

    t_enc, latent = clock(lambda: vae.encode(image), device)
    t_enc, latent = clock(lambda: vae.encode(image), device)
    sample(1)  # warm-up: model to the device, kernels
    t_sample, z = clock(lambda: sample(steps), device)
    t_dec, _ = clock(lambda: vae.decode(z), device)
    # the edit to reconstruct: a random latent inside the mask's cells (a random UNet's few steps are not an edit)
    cells = cover_mask(mask[:, None], 8).expand_as(latent) > 0
    edited = torch.where(cells, torch.randn(latent.shape, generator=torch.Generator().manual_seed(0)), latent)
    rec = {}
    warm = ReconstructSettings(iterations=1)  # warm-up, as for the sampler: one-off costs of a process's first call
    t_first, _ = clock(lambda: reconstruct_images(vae, image, mask, {"samples": edited}, warm), device)
    rec["first call (1 step, one-off costs)"] = t_first
    for mode in SEAM_MODES:
        t, (_, _, stats) = clock(lambda mode=mode: reconstruct_images(vae, image, mask, {"samples": edited},
                                                                      ReconstructSettings(seam=mode)), device)
        rec[mode] = (t, stats[0])
    return {"encode": t_enc, "step": t_sample / steps, "decode": t_dec, "rec": rec}


def pixel_path(size: int, steps: int, device) -> dict:
    from blended.augment import ExtendingAugmentation
    from blended.guidance import ClipGuidance, Guidance, RangeLoss
    from blended.pixel.sampler import SamplerSettings, sample
    from tests.support.sized_models import full_size_clip, make_model

    model = make_model("adm256", device)
    guidance = Guidance((ClipGuidance(full_size_clip(device), "a bowl of cherries",
                                      augmentation=ExtendingAugmentation(8)), RangeLoss()))
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    mask = torch.zeros(1, 1, size, size, device=device)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    sample(model, image, mask, guidance, SamplerSettings(steps="100", skip_timesteps=99), [0])  # warm-up
    s = SamplerSettings(steps="100", skip_timesteps=100 - steps)
    t, _ = clock(lambda: sample(model, image, mask, guidance, s, [0]), device)
    return {"step": t / steps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="image side in px (multiple of 64)")
    ap.add_argument("--steps", type=int, default=3, help="sampling steps timed per path")
    ap.add_argument("--checkpoint", type=Path, help="an SD1.5 single-file checkpoint (default: a random one)")
    ap.add_argument("--skip-pixel", action="store_true", help="only the latent path")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-latent-") as tmp:
        ckpt = args.checkpoint
        if ckpt is None:
            from tests.support.sd15_fixture import write_random_sd15

            t = time.perf_counter()
            ckpt = write_random_sd15(Path(tmp) / "random_sd15.safetensors")
            print(f"random SD1.5 checkpoint built in {time.perf_counter() - t:.1f} s")
        from tests.support.sd15_fixture import comfy_engine_path

        comfy_engine_path()
        import comfy.model_management as mm

        device = mm.get_torch_device()
        print(f"device: {device}; torch threads: {torch.get_num_threads()}; image {args.size}x{args.size} px, "
              f"timed {args.steps} sampling steps per path")
        lat = latent_path(ckpt, args.size, args.steps, device)
        gc.collect()  # the SD1.5 models died with latent_path's frame; free them before the pixel path
    sampling = LATENT_STEPS * lat["step"]
    latent_edit = lat["encode"] + sampling + lat["decode"]
    print(f"\nlatent path (SD1.5, CFG 7.5, euler, batch 1): encode {lat['encode']:.2f} s, {lat['step']:.2f} s/step, "
          f"decode {lat['decode']:.2f} s -> {latent_edit:.1f} s per edit of {LATENT_STEPS} steps "
          f"({LATENT_STEPS} x the measured s/step = {sampling:.1f} s of sampling)")
    rows = []
    first = lat["rec"].pop("first call (1 step, one-off costs)")
    print(f"background reconstruction, first call in the process (1 step, warm-up, not counted): {first:.1f} s")
    for mode, (t, st) in lat["rec"].items():
        reduction = (st["plain_outside"] / max(st["tuned_outside"], 1e-12)) ** 2
        rows.append((t, reduction, st["inside_mse_plain"]))
        print(f"background reconstruction, {mode}: {t:.1f} s per image = {t / sampling:.3f}x the {LATENT_STEPS}-step "
              f"sampling ({sampling:.1f} s); {st['iterations']} Adam steps (stopped: {st['stopped']}) on the last "
              f"{st['tuned_blocks']} decoder block(s); squared error in the {st['band_px']} px band outside the mask "
              f"{st['plain_outside'] ** 2:.5f} plain -> {st['tuned_outside'] ** 2:.6f} tuned ({reduction:.1f}x lower); "
              f"inside MSE to the plain decode {st['inside_mse_plain']:.5f}; seam score {st['seam_before']:.4f} -> "
              f"{st['seam_after']:.4f}")
    if not args.skip_pixel:
        pix = pixel_path(args.size, args.steps, device)
        pixel_edit = PIXEL_STEPS * pix["step"]
        print(f"pixel path (ADM-256 + ViT-B/16, 8 augmentations, batch 1): {pix['step']:.2f} s/step -> "
              f"{pixel_edit:.1f} s per edit of {PIXEL_STEPS} steps")
        print(f"\npixel / latent seconds per edit: {pixel_edit / latent_edit:.2f}x "
              f"(with reconstruction: {pixel_edit / (latent_edit + rows[0][0]):.2f}x)")
    t, reduction, inside = rows[0]  # the node's default seam mode
    print(f"reconstruction: time_ratio={t / sampling:.4f} outside_reduction={reduction:.2f} inside_mse={inside:.6f}")


if __name__ == "__main__":
    main()
