"""Any image size for the latent path: a context box at the model's resolution, and back.

SD1.x works best near 512 px (SDXL 1024), in sizes its VAE and UNet accept (multiples of 8; 16 for
Flux). A photo of any size is cut to a box around the mask with some context, scaled (aspect kept)
so its short side is the model's resolution and padded to the multiple; the user's own encoder,
sampler and decoder run on that crop, and ``stitch`` pastes only the masked area back into the
caller's *original* values, so every pixel outside the mask is the very float passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import masks, region
from ..errors import EMPTY_MASK, InputError
from . import report as stitch_report
from . import seam

# The VAE downscales (px per latent cell) of the latent models the pack edits: 8 for SD1.x, SDXL,
# SD3, Flux.1, Qwen-Image and Wan 2.1; 16 for Flux.2 and Wan 2.2 5B; 32 for HunyuanImage 2.1.
VAE_CELLS = (8, 16, 32)


def vae_cut_cell(image_hw, encoded_hw, cells: bool, factor: int | None = None) -> int | None:
    """The VAE cell size (px) that explains why an image of ``image_hw`` px became ``encoded_hw``
    (latent cells when ``cells``, else the decoded px): ComfyUI's VAEEncode cuts an image to whole
    cells, so a crop that is not a multiple of the cell loses the remainder, and every size check
    after it fails. ``factor``: the model's cell when known; None when no cell explains the sizes."""
    H, W = image_hw
    for f in (factor,) if factor else VAE_CELLS:
        h, w = encoded_hw if cells else (encoded_hw[0] / f, encoded_hw[1] / f)
        if (H // f, W // f) == (h, w) and (H % f or W % f):
            return f
    return None


def cut_by_vae(what: str, image_hw, cell: int) -> str:
    """The message for a size that a VAE cut: the cause (the crop's multiple) and the value to set."""
    H, W = image_hw
    lost = " and ".join(f"{n % cell} px of its {side}" for n, side in ((W, "width"), (H, "height")) if n % cell)
    return (f"{what} is {W}x{H} px, not a multiple of the VAE's {cell} px cell, so VAEEncode dropped "
            f"{lost}. If it comes from Blended Latent Crop, set the crop's multiple to "
            f"{cell} (or a multiple of {cell}; its tooltip lists each model's) and run the crop again; otherwise "
            f"resize the image to a multiple of {cell} px before VAEEncode.")


@dataclass
class LatentCrop:
    """What the stitch needs: the originals, the box, and the model-size canvas."""

    image: torch.Tensor  # [B,3,H,W] in 0..1, the caller's own values
    mask: torch.Tensor  # [B|1,1,H,W] binary edit mask at full size
    box: region.Box
    size: tuple[int, int]  # model input (h, w) in pixels


def crop_for_model(image: torch.Tensor, mask: torch.Tensor, resolution: int, multiple: int, margin: float,
                   dilate: int = 0) -> tuple[torch.Tensor, torch.Tensor, LatentCrop]:
    """``image`` [B,3,H,W] in 0..1, ``mask`` [B|1,1,H,W] (any value above 0 edits) ->
    (crop [B,3,h,w] in 0..1, binary crop mask [B|1,1,h,w], LatentCrop)."""
    if resolution < multiple or resolution % multiple:
        raise InputError(f"resolution {resolution} must be a multiple of {multiple} (the model's size step).")
    edit = masks.dilate(masks.binarize(mask, 0.0), int(dilate))
    box = region.context_box(edit, margin)
    h, w = region.model_input_size(box, resolution, multiple)
    # the short side must be a multiple too
    size = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
    crop_img = region.crop_resize(image, box, size).clamp(0, 1)
    # any coverage counts: a thin stroke must not vanish in the downscale
    crop_mask = (region.crop_resize(edit, box, size, pad_mode="constant") > 0).float()
    return crop_img, crop_mask, LatentCrop(image, edit, box, size)


def stitch(crop: LatentCrop, edited: torch.Tensor, feather: int = 0,
           video: bool = False, seam_mode: str = "exact paste") -> tuple[torch.Tensor, torch.Tensor]:
    """``stitch_with_report`` without the seam scores (the library callers that only need the paste)."""
    full, weights, _ = _stitch(crop, edited, feather, video, seam_mode, scores=False)
    return full, weights


def stitch_with_report(crop: LatentCrop, edited: torch.Tensor, feather: int = 0, video: bool = False,
                       seam_mode: str = "exact paste") -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """``stitch`` plus, per stitched image, ``stitch_report.image_stats`` (with ``source``: the
    original it was pasted onto); ``stitch_report.report_text`` turns the list into the node's text."""
    return _stitch(crop, edited, feather, video, seam_mode, scores=True)


def _stitch(crop: LatentCrop, edited: torch.Tensor, feather: int, video: bool, seam_mode: str, scores: bool):
    """Edited crops [N,3,h,w] in 0..1 (N = images x samples, image-major) -> full images [N,3,H,W]
    and the paste weights [N,1,H,W]; where a weight is 0 the value is the original's, bit for bit.

    ``video``: the crop's batch is the frames of one clip and ``edited`` holds whole clips, one after
    the other (samples x frames: what VAEDecode of a batch of video latents gives), so frame i is
    pasted onto source frame i mod F.

    ``seam_mode`` (blended.latent.seam.MODES) is applied by ``seam.apply_seam`` at full size, on the
    edit resized back into the original (where the original's own pixels are around the border), so
    outside the mask it stays the original bit for bit."""
    b, n = crop.image.shape[0], edited.shape[0]
    if tuple(edited.shape[-2:]) != tuple(crop.size):
        said = f"images are {edited.shape[-1]}x{edited.shape[-2]} but the crop is {crop.size[1]}x{crop.size[0]}"
        cell = vae_cut_cell(crop.size, edited.shape[-2:], cells=False)
        raise InputError(f"{said}: " + (cut_by_vae("the crop", crop.size, cell) if cell else
                                        "connect the decoded result of the latent made from this crop."))
    if n % b:
        what = f"the {b} frames of the cropped clip (decode every frame the VAE encoded)" if video else \
            f"the {b} cropped image(s)"
        raise InputError(f"images has a batch of {n}, not a multiple of {what}.")
    per = n // b
    edit_mask = crop.mask if crop.mask.shape[0] == b else crop.mask.expand(b, -1, -1, -1)
    weights, feather = seam.paste_weights(seam_mode, edit_mask, int(feather))
    outs, ws, stats = [], [], []
    for i in range(n):
        k = i % b if video else i // per
        original, w, hard_mask = crop.image[k : k + 1], weights[k : k + 1], edit_mask[k : k + 1]
        full = region.resize_full(edited[i : i + 1], crop.box, original)
        out, hard = seam.apply_seam(seam_mode, full, original, hard_mask, w)
        if scores:
            stats.append({"source": k, **stitch_report.image_stats(seam_mode, feather, hard, out, hard_mask)})
        outs.append(out)
        ws.append(w)
    return torch.cat(outs), torch.cat(ws), stats


def _mask_size_message(mask_hw, cells_hw, factor: int | None) -> str:
    """Why a mask does not fit its latent, by the likeliest cause: the VAE cut an image that was not a
    multiple of its cell (the crop's ``multiple`` too small for the model: the user wired the right
    image and mask, so "draw it on the right image" would send them the wrong way); else a mask of
    another image or another model's size."""
    (H, W), (h, w) = mask_hw, cells_hw
    said = f"mask is {W}x{H} px but the latent is {w}x{h} cells"
    cell = vae_cut_cell(mask_hw, cells_hw, cells=True, factor=factor)
    if cell:
        return f"{said}: " + cut_by_vae("the image", mask_hw, cell)
    wired = "(use the Blended Latent Crop's image and mask outputs for VAEEncode and this sampler)."
    if factor is None:
        return f"{said}: the mask must be drawn on the image the latent was encoded from {wired}"
    return (f"{said}, and this model's VAE makes one cell of {factor}x{factor} px (the mask would need "
            f"{w * factor}x{h * factor} px): draw the mask on the image this latent was encoded from {wired}")


def encoded_factor(pixel_hw, latent_hw) -> int | None:
    """Pixels per latent cell if an image of ``pixel_hw`` encodes to ``latent_hw`` cells (the same
    whole factor on both axes, up to the few pixels an encoder drops to reach that multiple), else None."""
    (H, W), (h, w) = pixel_hw, latent_hw
    f = H // h
    return None if f < 1 or W // w != f or H - f * h >= f or W - f * w >= f else f


def latent_pixel_mask(mask: torch.Tensor, latent_shape, batch: int, factor: int | None = None,
                      frames_per_latent: int | None = None) -> tuple[torch.Tensor, int]:
    """Pixel mask [B|1,1,H,W] for a latent [B,C,h,w] -> (its part the latent covers, [B|1,1,H',W'],
    the downscale factor). For a video latent [B,C,T,h,w] the mask's batch is the frames (one mask
    per frame of the encoded clip, or one for all): -> [1,1,T,H',W'], each latent frame's mask the
    union of the frames it encodes (``frame_union``), shared by every latent of the batch.

    The mask must be at the size the latent was encoded from (a multiple of the latent's size, up to
    the few pixels an encoder drops to reach that multiple; those are cut evenly as ComfyUI's
    VAEEncode does). ``factor``, when the model's VAE downscale is known, must be the ratio: a mask of
    another model's size (an SD1.5 512 px mask on a 1024 px Flux latent) would otherwise be read at the
    wrong scale. ``frames_per_latent``, when the model's video VAE is known, is its k (a 9-frame mask on a
    2-frame latent fits LTXV's k = 8 but not a Wan latent's k = 4)."""
    if len(latent_shape) not in (4, 5):
        raise InputError(f"latent must be an image latent [batch, channels, height, width] or a video latent "
                         f"[batch, channels, frames, height, width]; got {tuple(latent_shape)}.")
    h, w = latent_shape[-2:]
    H, W = mask.shape[-2:]
    f = encoded_factor((H, W), (h, w))
    if f is None or (factor is not None and f != factor):
        raise InputError(_mask_size_message((H, W), (h, w), factor))
    if len(latent_shape) == 5:
        mask = frame_union(mask, latent_shape[2], frames_per_latent)
    elif mask.shape[0] not in (1, batch):
        raise InputError(
            f"mask has a batch of {mask.shape[0]} for {batch} latent(s): give one mask, or one per latent."
        )
    top, left = (H - f * h) // 2, (W - f * w) // 2
    m = mask[..., top : top + f * h, left : left + f * w].float().clamp(0, 1)
    if not (m > 0).any():
        raise InputError(EMPTY_MASK)
    return m, f


# how many frames ComfyUI's video VAEs fold into one latent frame: none (frame by frame), Wan 2.1/2.2,
# Hunyuan Video and Kandinsky 5, Mochi, LTXV / LTX-2 and Cosmos
TEMPORAL_FACTORS = (1, 4, 6, 8)
_VAES_BY_FACTOR = {4: "Wan, Hunyuan Video, Kandinsky 5, CogVideoX", 6: "Mochi", 8: "LTXV, LTX-2, Cosmos"}

# Video VAEs that encode a clip in chunks (MiniMax H3's, ComfyUI 0.33): (frames per chunk, frames per
# latent frame within a chunk, latent frames dropped at the end). H3's encodes every 17 frames causally
# 4-fold into 5 latent frames and drops the last 3: 17n + 5 frames <-> 5n + 2 latent frames.
CHUNKED_VAES = ((17, 4, 3),)


def temporal_factor(frames: int, latent_frames: int) -> int | None:
    """Frames per latent frame, k, if a clip of ``frames`` frames is what a causal video VAE with k in
    ``TEMPORAL_FACTORS`` encodes into ``latent_frames`` (frames = 1 + k(latent_frames - 1)), else None."""
    frames, latent_frames = int(frames), int(latent_frames)
    if latent_frames <= 1 or (frames - 1) % (latent_frames - 1):
        return None
    k = (frames - 1) // (latent_frames - 1)
    return k if k in TEMPORAL_FACTORS else None


def frame_groups(frames: int, latent_frames: int, frames_per_latent: int | None = None
                 ) -> list[tuple[int, int]] | None:
    """The frames [start, end) each latent frame encodes, if a video VAE ComfyUI runs encodes a clip of
    ``frames`` frames into ``latent_frames``: a causal one (``temporal_factor``; with
    ``frames_per_latent``, the model's own k, only that one) or a chunked one (``CHUNKED_VAES``); else
    None. Within a chunk, latent frame 0 is its first frame alone and latent frame i its frames
    k(i-1)+1 .. ki, as in a causal VAE."""
    k = temporal_factor(frames, latent_frames)
    if k is not None and (not frames_per_latent or k == frames_per_latent):
        return [(0, 1)] + [(k * (t - 1) + 1, k * t + 1) for t in range(1, int(latent_frames))]
    if frames_per_latent:
        return None
    for vae in CHUNKED_VAES:
        groups = _chunked_groups(int(latent_frames), *vae)
        if groups is not None and groups[-1][1] == frames:
            return groups
    return None


def _chunked_groups(T: int, chunk: int, k: int, dropped: int) -> list[tuple[int, int]] | None:
    """``frame_groups`` of a chunked VAE for T latent frames, or None where it never makes T."""
    per_chunk = -(-chunk // k)
    if T <= 1 or (T + dropped) % per_chunk:
        return None
    starts = [(c * chunk, i) for c, i in (divmod(j, per_chunk) for j in range(T))]
    return [(c, c + 1) if i == 0 else (c + k * (i - 1) + 1, c + k * i + 1) for c, i in starts]


def _frame_count_message(n: int, T: int, k: int | None = None) -> str:
    """Why a per-frame mask does not fit a video latent, and the fix: the model's k where known, else
    every video VAE's clip length for T latent frames."""
    if k:
        return (f"mask has {n} frames but the video latent has {T} latent frames: this model's VAE folds {k} frames "
                f"into each latent frame after the first, so the clip it encoded had 1 + {k}*{T - 1} = "
                f"{1 + k * (T - 1)} frames. Give one mask for all frames ([1,H,W]), or one per frame of the clip that "
                f"was encoded (trim the video and its mask to 1 + {k}n frames before VAEEncode).")
    counts = [f"{names}: 1 + {k}*{T - 1} = {1 + k * (T - 1)}" for k, names in _VAES_BY_FACTOR.items()]
    counts += [f"MiniMax H3: {groups[-1][1]}" for groups in (_chunked_groups(T, *vae) for vae in CHUNKED_VAES)
               if groups is not None]
    return (f"mask has {n} frames but the video latent has {T} latent frames: a video VAE encodes {T} latent frames "
            f"from a clip of a set length ({'; '.join(counts)}). Give one mask for all frames ([1,H,W]), "
            "or one per frame of the clip that was encoded (trim the video and its mask to the model's length before "
            "VAEEncode: 1 + kn frames for a k-fold VAE, 1 + 4n for Wan, 1 + 8n for LTX; 17n + 5 for MiniMax H3).")


def frame_union(mask: torch.Tensor, latent_frames: int, frames_per_latent: int | None = None) -> torch.Tensor:
    """Frame masks [F|1,1,H,W] -> one pixel mask per latent frame [1,1,T,H,W].

    Causal video VAEs (Wan 2.1/2.2, Hunyuan Video, Kandinsky 5, CogVideoX, Cosmos, LTXV / LTX-2, Mochi)
    encode F = 1 + k(T-1) frames into T latent frames: latent frame 0 is frame 0 alone, latent frame
    t >= 1 holds frames k(t-1)+1 .. kt, and decoding gives back those 1 + k(T-1) frames; MiniMax H3's does so
    per chunk of 17 frames (``frame_groups``). A latent frame is edited wherever any of its frames is,
    so its mask is their union (a covering in time, as cells cover pixels in space). The stitch pastes
    decoded frame by source frame, so the clip must be exactly the frames the VAE decodes back; that
    fixes the grouping without knowing the VAE, and a count that no video VAE has means the mask
    belongs to another clip. ``frames_per_latent``: the model's own k where it is known
    (``nodes.latent_sampling.latent_frame_factor``), which the frames must match.
    """
    T, n = int(latent_frames), mask.shape[0]
    if n == 1:
        return mask.unsqueeze(2).expand(-1, -1, T, -1, -1)[:1]
    groups = frame_groups(n, T, frames_per_latent)
    if groups is None:
        raise InputError(_frame_count_message(n, T, frames_per_latent))
    frames = [mask[a:b].amax(0, keepdim=True) for a, b in groups]
    return torch.cat(frames).permute(1, 0, 2, 3).unsqueeze(0)
