"""Guidance losses on the predicted clean image x̂0.

Each term maps x̂0 (differentiable in x_t) to a weighted per-sample loss ``[B]``. Losses are kept
per sample, never averaged over the batch, so every sample in a batch gets exactly the gradient
it would get alone and ranking many samples is just a bigger batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .augment import ExtendingAugmentation, resize_for_clip
from .clip_distance import check_distance, clip_distance
from .clip_model import ClipBundle
from .errors import InputError
from .prompts import PromptSet, WeightedPrompt, combine, parse_prompts
from .typography import TypographyGuard


@dataclass
class GuidanceContext:
    """What a loss may look at besides x̂0 (all on the sample's device)."""

    mask: torch.Tensor  # [B,1,H,W], 1 = edit
    source: torch.Tensor  # [B,3,H,W] in [-1,1]
    step: int = 0  # respaced index t
    generators: list[torch.Generator] = field(default_factory=list)  # one per sample, for augmentations


MAX_CHARS_PER_TOKEN = 33  # the longest token of CLIP's vocabulary, plus a separating space


def check_prompt(clip: ClipBundle, prompt: str, input_name: str = "prompt") -> str:
    """Reject prompts CLIP would silently truncate or cannot use."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise InputError(f"{input_name} is empty: describe what should appear inside the mask, e.g. 'a red ball'.")
    # CLIP's longest vocabulary entry is 32 characters, so a longer text cannot fit, and its BPE on one
    # very long word takes seconds: refuse by length before tokenizing.
    compact = " ".join(prompt.split())
    if len(compact) > MAX_CHARS_PER_TOKEN * clip.context_length:
        raise InputError(
            f"{input_name} is {len(compact)} characters long; CLIP reads at most {clip.context_length} tokens "
            "(a few hundred characters). Shorten it to a short phrase: CLIP guidance works best with a few words."
        )
    encode = getattr(clip.tokenizer, "encode", None)
    if encode is not None:
        n = len(encode(prompt)) + 2  # start and end tokens
        if n > clip.context_length:
            raise InputError(
                f"{input_name} is {n} CLIP tokens long; CLIP reads at most {clip.context_length}. "
                "Shorten it to a short phrase: CLIP guidance works best with a few words."
            )
    return prompt


def check_prompts(clip: ClipBundle, entries: list[WeightedPrompt], input_name: str = "prompt") -> list[WeightedPrompt]:
    """Token limits per entry of one input; the message quotes the entry when there are several."""
    for p in entries:
        short = p.text if len(p.text) <= 40 else p.text[:37] + "..."
        check_prompt(clip, p.text, input_name if len(entries) == 1 else f"{input_name} entry '{short}'")
    return entries


def check_weight(value: float, name: str, example: str) -> float:
    """A user-set number: finite, or an error that names the input."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} is {value!r}: use a number, e.g. {example}.") from None
    if not math.isfinite(value):
        raise InputError(f"{name} is {value}: use a finite number, e.g. {example}.")
    return value


class TextTargets:
    """Weighted text embeddings: the distance of an image is the weighted sum of its D_CLIP to each."""

    def __init__(self, clip: ClipBundle, prompts: PromptSet, distance: str = "spherical"):
        check_distance(distance)
        self.clip, self.prompts, self.distance = clip, prompts, distance
        self._text: dict[torch.device, torch.Tensor] = {}

    def embeddings(self, device: torch.device) -> torch.Tensor:
        if device not in self._text:
            with torch.no_grad():
                self._text = {device: self.clip.encode_text(self.prompts.texts).to(device)}
        return self._text[device]

    def __call__(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """[N] weighted distances; one prompt of weight 1 is exactly the paper's ``clip_distance``."""
        text = self.embeddings(image_embeds.device)
        total = None
        for i, w in enumerate(self.prompts.weights):
            d = clip_distance(image_embeds, text[i : i + 1], self.distance)
            d = d if w == 1.0 else w * d
            total = d if total is None else total + d
        return total


class ClipGuidance:
    """D_CLIP between the masked x̂0 (optionally augmented) and the prompt(s).

    ``prompt`` takes the weighted syntax of ``blended.prompts`` and ``negative_prompt`` pushes away;
    D_CLIP becomes the normalised weighted sum. ``typography`` > 0 adds the typography guard with
    that strength (``blended.typography``), computed on the same CLIP forward.
    """

    def __init__(
        self,
        clip: ClipBundle,
        prompt: str,
        weight: float = 1000.0,
        distance: str = "spherical",
        augmentation: ExtendingAugmentation | None = None,
        negative_prompt: str = "",
        typography: float = 0.0,
    ):
        check_distance(distance)
        self.clip = clip
        positive = check_prompts(clip, parse_prompts(prompt, "prompt"), "prompt")
        negative = check_prompts(clip, parse_prompts(negative_prompt, "negative_prompt"), "negative_prompt")
        self.prompts: PromptSet = combine(positive, negative)
        self.prompt = self.prompts.describe() if not self.prompts.is_single else self.prompts.texts[0]
        self.weight = check_weight(weight, "clip_lambda", "1000")
        self.distance, self.augmentation = distance, augmentation
        self.targets = TextTargets(clip, self.prompts, distance)
        self.guard = None
        if check_weight(typography, "typography_strength", "0.5") != 0:
            self.guard = TypographyGuard(clip, self.prompts.positive, typography, distance)

    def text_embedding(self, device: torch.device) -> torch.Tensor:
        return self.targets.embeddings(device)

    def distances(
        self, images: torch.Tensor, mask: torch.Tensor, generators: list[torch.Generator] | None = None
    ) -> torch.Tensor:
        """Per-sample D_CLIP, averaged over the augmented views when generators are given."""
        masked = (images * mask).add(1).div(2)
        size = self.clip.image_size
        if self.augmentation is not None and generators:
            views = self.augmentation(masked, size, generators)
        else:
            views = resize_for_clip(masked, size)
        embeds = self.clip.encode_image(views)
        dists = self.targets(embeds)
        if self.guard is not None:
            dists = dists + self.guard.penalty(embeds)
        return dists.view(-1, images.shape[0]).mean(0)

    def loss(self, x0: torch.Tensor, ctx: GuidanceContext) -> torch.Tensor:
        return self.weight * self.distances(x0, ctx.mask, ctx.generators)

    def score(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Un-augmented D_CLIP, the ranking criterion (lower is better)."""
        return self.distances(images, mask)

    def to(self, device) -> "ClipGuidance":
        self.clip.to(device)
        return self


class RangeLoss:
    """Keeps x̂0 inside [-1, 1]; CLIP gradients otherwise push colours out of range."""

    def __init__(self, weight: float = 50.0):
        self.weight = float(weight)

    def loss(self, x0: torch.Tensor, ctx: GuidanceContext) -> torch.Tensor:
        return self.weight * (x0 - x0.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))

    def to(self, device) -> "RangeLoss":
        return self


class BackgroundLoss:
    """D_bg of local CLIP-guided diffusion (Algorithm 1): MSE and LPIPS outside the mask.

    Weighted as the reference code does (λ_l2·MSE + λ_lpips·LPIPS); the paper's λ·½(MSE+LPIPS)
    is λ_l2 = λ_lpips = λ/2.
    """

    def __init__(self, lpips: torch.nn.Module, weight_lpips: float = 1000.0, weight_l2: float = 10000.0):
        self.lpips, self.weight_lpips, self.weight_l2 = lpips, float(weight_lpips), float(weight_l2)

    def loss(self, x0: torch.Tensor, ctx: GuidanceContext) -> torch.Tensor:
        keep = 1 - ctx.mask
        a, b = x0 * keep, ctx.source * keep
        total = self.weight_l2 * (a - b).pow(2).mean(dim=(1, 2, 3))
        if self.weight_lpips:
            total = total + self.weight_lpips * self.lpips(a, b).view(-1)
        return total

    def to(self, device) -> "BackgroundLoss":
        self.lpips.to(device)
        return self


@dataclass(frozen=True)
class Guidance:
    """An immutable set of loss terms; nodes add terms by making a new Guidance."""

    terms: tuple = ()

    def with_term(self, term) -> "Guidance":
        return replace(self, terms=self.terms + (term,))

    @property
    def clip(self) -> ClipGuidance | None:
        return next((t for t in self.terms if isinstance(t, ClipGuidance)), None)

    def loss(self, x0: torch.Tensor, ctx: GuidanceContext) -> torch.Tensor:
        return sum(term.loss(x0, ctx) for term in self.terms)

    def to(self, device) -> "Guidance":
        for term in self.terms:
            term.to(device)
        return self
