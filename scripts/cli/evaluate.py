"""Score a folder of edits against their source, outside ComfyUI (the Blended Evaluate node's numbers).

    python -m scripts.cli.evaluate --source photo.png --mask mask.png --prompt "a bowl of cherries" results/*.png
        [--clip ViT-B-32-quickgelu:openai | models/blended_clip/other_clip.safetensors]
        [--lpips models/lpips/lpips_vgg.safetensors]
        [--band 4] [--seam-px 2] [--json report.json]

The CLIP score should come from a CLIP *other* than the guiding ViT-B/16, which was optimised
against; the default is OpenAI's ViT-B/32. Without --lpips the LPIPS numbers use torchvision's
VGG16 (downloaded once when online); --no-lpips skips them. The seam score (how much the step across
the mask's border exceeds the image's own variation beside it; 0 = seamless) needs no model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_EVAL_CLIP = "ViT-B-32-quickgelu:openai"


def read_image(path: Path):
    import numpy as np
    import torch
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def read_mask(path: Path, size: tuple[int, int]):
    import numpy as np
    import torch
    from PIL import Image

    mask = Image.open(path).convert("L")
    if mask.size != (size[1], size[0]):
        raise SystemExit(f"--mask is {mask.size[0]}x{mask.size[1]} but --source is {size[1]}x{size[0]}.")
    m = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None, None]
    if not m.any():
        raise SystemExit(f"--mask {path} is all black: white marks the edited area.")
    return m


def evaluate_files(source: Path, mask: Path, edits: list[Path], prompt: str, clip=None, lpips=None, band: int = 4,
                   seam_px: int = 2):
    import torch

    from blended.metrics import evaluate

    src = read_image(source)
    edited = []
    for path in edits:
        img = read_image(path)
        if img.shape != src.shape:
            raise SystemExit(
                f"{path} is {img.shape[-1]}x{img.shape[-2]} but --source is {src.shape[-1]}x{src.shape[-2]}."
            )
        edited.append(img)
    if not edited:
        raise SystemExit("no edited images given.")
    report = evaluate(torch.cat(edited), src, read_mask(mask, tuple(src.shape[-2:])), prompt, clip, lpips, band,
                      seam_px)
    report["files"] = [str(p) for p in edits]
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("edits", nargs="+", type=Path, help="edited images, same size as --source")
    p.add_argument("--source", required=True, type=Path)
    p.add_argument("--mask", required=True, type=Path, help="white = the edited area")
    p.add_argument("--prompt", required=True)
    p.add_argument("--clip", default=DEFAULT_EVAL_CLIP, help="open_clip hub tag or a CLIP file ('none' to skip)")
    p.add_argument("--lpips", help="LPIPS-VGG or torchvision VGG16 file (default: torchvision's download)")
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--band", type=int, default=4, help="pixels around the mask left out of the background metrics")
    p.add_argument("--seam-px", type=int, default=2, help="width of the bands the seam score compares (pixels)")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    if args.seam_px < 1:
        raise SystemExit(f"--seam-px {args.seam_px}: use 1 or more pixels.")

    from blended.clip_model import load_clip
    from blended.errors import BlendedError
    from blended.lpips_model import load_lpips

    try:
        clip = None if args.clip.lower() == "none" else load_clip(args.clip)
        lpips = None if args.no_lpips else load_lpips(args.lpips)
    except BlendedError as e:
        raise SystemExit(f"error: {e}") from None
    report = evaluate_files(args.source, args.mask, args.edits, args.prompt, clip, lpips, args.band, args.seam_px)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
