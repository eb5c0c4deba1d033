"""The typography guard: keep CLIP guidance from *writing* the prompt instead of drawing it.

CLIP reads text in images, and an image of the word "cherries" is close to the text "cherries"
in its embedding space, often closer than a photo of cherries (the typographic attack of Goh et
al., 2021). A gradient that only pulls towards the prompt may therefore paint letters, as the
paper notes among its limitations. The guard adds a push away from two things CLIP itself says
look like writing: its embedding of each positive prompt *rendered as text* (drawn with PIL, dark
on light and light on dark, and embedded with the same CLIP), and its embedding of the generic
prompts "text", "letters", "watermark".

The penalty is ``strength · max(0, D(blank, t) − D(x, t))`` averaged over those targets t, where
blank is a plain grey view (what CLIP sees of an empty masked area). While x looks more like
writing than a blank does, its gradient is that of a negative prompt of weight ``strength``;
beyond that it stops pushing, so the guard never drags an edit ever further from anything
text-like (which would fight the prompt: a photo of cherries shares meaning with the word). As a
score it is 0 for ordinary content and largest for an image that *is* the written prompt, so
ranking with the guard demotes samples that drift into lettering while D_CLIP keeps its scale.
The two groups (rendered prompts, generic prompts) count half each, whatever their sizes.
"""

from __future__ import annotations

import math

import torch

from .augment import resize_for_clip
from .clip_distance import check_distance, clip_distance
from .clip_model import ClipBundle
from .errors import InputError

GENERIC_TEXT_PROMPTS = ("text", "letters", "watermark")
RENDER_SIZE = 224  # drawn at CLIP ViT's own input size, so the letters are legible where CLIP looks


def load_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable built-in font, no files needed
    except TypeError:  # older Pillow: the fixed bitmap font; render_text scales the canvas instead
        return None


def _wrap(draw, words: list[str], font, width: int) -> list[str]:
    lines: list[str] = []
    for word in words:
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(trial, font=font) <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def render_text(text: str, size: int = RENDER_SIZE, dark_on_light: bool = True) -> torch.Tensor:
    """The text drawn as large as fits a ``size`` square, word-wrapped and centred: [1,3,size,size] in 0..1."""
    from PIL import Image, ImageDraw, ImageFont

    ink, paper = (0, 0, 0), (255, 255, 255)
    if not dark_on_light:
        ink, paper = paper, ink
    words = text.split() or ["?"]
    canvas = Image.new("RGB", (size, size), paper)
    draw = ImageDraw.Draw(canvas)
    box = int(size * 0.9)
    spacing = 0.25
    if load_font(12) is None:  # bitmap font (Pillow < 10.1): draw small, then scale up with sharp edges
        small = max(48, size // 4)
        font = ImageFont.load_default()
        tmp = Image.new("RGB", (small, small), paper)
        d = ImageDraw.Draw(tmp)
        text = "\n".join(_wrap(d, words, font, int(small * 0.9)))
        left, top, right, bottom = d.multiline_textbbox((0, 0), text, font=font, align="center")
        origin = ((small - (right - left)) // 2 - left, (small - (bottom - top)) // 2 - top)
        d.multiline_text(origin, text, fill=ink, font=font, align="center")
        canvas = tmp.resize((size, size), Image.NEAREST)
    else:
        for font_size in range(size // 2, 5, -2):
            font = load_font(font_size)
            lines = _wrap(draw, words, font, box)
            left, top, right, bottom = draw.multiline_textbbox((0, 0), "\n".join(lines), font=font,
                                                               spacing=int(font_size * spacing), align="center")
            if right - left <= box and bottom - top <= box:
                break
        draw.multiline_text((size // 2, size // 2), "\n".join(lines), fill=ink, font=font, anchor="mm",
                            align="center", spacing=int(font_size * spacing))
    rgb = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(size, size, 3)
    return rgb.permute(2, 0, 1)[None].float().div(255)


class TypographyGuard:
    """A push away from CLIP's idea of written text: rendered prompts and generic text prompts."""

    def __init__(self, clip: ClipBundle, prompts: list[str], strength: float = 0.5, distance: str = "spherical",
                 generic: tuple[str, ...] = GENERIC_TEXT_PROMPTS):
        strength = float(strength)
        if not math.isfinite(strength) or strength < 0:
            raise InputError(f"typography_strength {strength}: use a finite number of 0 or more (e.g. 0.5).")
        check_distance(distance)
        if not prompts and not generic:
            raise InputError("the typography guard needs a prompt to render or generic text prompts.")
        self.clip, self.prompts, self.generic = clip, list(prompts), tuple(generic)
        self.strength, self.distance = strength, distance
        self._targets: dict[torch.device, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def rendered_images(self) -> torch.Tensor:
        """Every prompt, dark on light and light on dark, at CLIP's input size: [2P,3,S,S] in 0..1."""
        views = [render_text(p, RENDER_SIZE, dark) for p in self.prompts for dark in (True, False)]
        return resize_for_clip(torch.cat(views), self.clip.image_size)

    def targets(self, device: torch.device) -> list[torch.Tensor]:
        """Embedding groups [K,D] the guard pushes away from (rendered prompts, generic prompts)."""
        return [t for t, _ in self._groups(device)]

    def _groups(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(targets [K,D], D(blank, target) [K]) per group, computed once per device."""
        if device not in self._targets:
            groups = []
            with torch.no_grad():
                if self.prompts:
                    groups.append(self.clip.encode_image(self.rendered_images().to(self.clip.device)))
                if self.generic:
                    groups.append(self.clip.encode_text(list(self.generic)))
                size = self.clip.image_size
                blank = self.clip.encode_image(torch.full((1, 3, size, size), 0.5, device=self.clip.device))
                refs = [clip_distance(blank, g, self.distance) for g in groups]
            self._targets = {device: [(g.to(device), r.to(device)) for g, r in zip(groups, refs)]}
        return self._targets[device]

    def closeness(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Mean of ``max(0, D(blank, t) − D(x, t))`` over each group, groups averaged: [N], 0 for content
        no more text-like than a blank view."""
        per_group = [(ref - clip_distance(image_embeds[:, None], g[None], self.distance)).clamp(min=0).mean(-1)
                     for g, ref in self._groups(image_embeds.device)]
        return torch.stack(per_group).mean(0)

    def penalty(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.strength * self.closeness(image_embeds)

    def loss(self, x0: torch.Tensor, ctx) -> torch.Tensor:
        """As a guidance term on its own (un-augmented masked x̂0); ClipGuidance folds it in instead,
        sharing its CLIP forward."""
        views = resize_for_clip((x0 * ctx.mask).add(1).div(2), self.clip.image_size)
        return self.penalty(self.clip.encode_image(views))

    def to(self, device) -> "TypographyGuard":
        self.clip.to(device)
        return self
