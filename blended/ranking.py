"""Ranking of samples (paper, Sec. 4.4), and what the paper's ranking cannot see.

Diffusion samples of one prompt differ a lot in quality, so the method draws many and keeps the
ones CLIP likes best. Ranking uses D_CLIP *without* augmentation: the augmentations serve the
gradient, and a random warp would only add noise to the score.

D_CLIP looks only inside the mask, so a sample that fits the prompt there but clashes with its
surroundings can still rank first. Two more criteria look across the border, each with its own
weight (0 = off, and with both off the order is the paper's):
- ``seam``: ``metrics.seam_score`` on the mask's border, how much the step from just inside to
  just outside exceeds the image's own variation there (copying the background earns nothing);
- ``scene``: D_CLIP of the *unmasked* view (the context box, or the whole image) against a scene
  prompt, so the edit has to make sense in its surroundings.
The total is the weighted sum (lower is better); equal totals are ordered by D_CLIP (lower first),
then by the samples' order.

Reward models (``blended.reward_models``: HPSv2.1, PickScore, LAION aesthetic) join as further
criteria, each on the mask's box or the whole picture. A single reward model can be fooled (HPSv2
likes brightness and vivid colour, Follow-Your-Preference, arXiv 2509.23082), and scores on
different scales do not add, so with reward criteria the default combination is the weighted
*mean rank*; the weighted mean of z-scored values is the other option. With only the criteria
above, ``combine="auto"`` keeps the weighted sum, so an existing graph ranks exactly as before.
A ``whole_image`` reward judges the whole picture, so it is judged against the scene prompt when one
is given (the edit's own prompt describes only the masked part); a ``mask_box`` one against the
edit's prompt.

With reward criteria, a sample that is first on one criterion and in the worse half on every other
(two criteria are enough) is flagged, and with ``demote`` it is put below every unflagged sample.

A score that is not finite (NaN, or an infinity from a broken model or an overflow) is worst on its
criterion in every combination: last rank, the worst z-score plus one, +inf in a sum; the sample is
ordered after every sample whose scores are all finite and named in the scores text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .augment import resize_for_clip
from .errors import InputError, no_check
from .guidance import ClipGuidance, TextTargets, check_prompts
from .metrics import seam_score
from .prompts import combine, parse_prompts

CRITERIA = ("clip", "seam", "scene")
LABELS = {"clip": "D_CLIP", "seam": "seam", "scene": "scene"}
COMBINES = ("auto", "mean_rank", "z_score", "weighted_sum")
REWARD_VIEWS = ("mask_box", "whole_image")
VIEW_LABELS = {"mask_box": "box", "whole_image": "whole"}


@dataclass(frozen=True)
class RewardCriterion:
    """One reward model as a ranking criterion; ``reward`` None means unavailable (``note`` says why)."""

    reward: object | None  # blended.reward_models.RewardModel
    weight: float = 1.0
    view: str = "mask_box"
    note: str = ""
    name: str = ""  # the model's label when it is unavailable

    def __post_init__(self):
        w = self.weight
        if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise InputError(f"reward weight is {w}: use a finite number of 0 or more "
                             "(0 lists it without ranking by it).")
        if self.view not in REWARD_VIEWS:
            raise InputError(f"reward view '{self.view}': choose one of {', '.join(REWARD_VIEWS)}.")

    @property
    def label(self) -> str:
        base = self.reward.label if self.reward is not None else (self.name or "reward")
        return f"{base} ({VIEW_LABELS[self.view]})"


@dataclass(frozen=True)
class RankingWeights:
    """Weight of each criterion in the total; the paper's ranking is clip=1, the others 0."""

    clip: float = 1.0
    seam: float = 0.0
    scene: float = 0.0
    # reward criteria with weight will be given: these three may all be 0
    allow_zero: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self):
        names = {"clip": "clip_weight", "seam": "seam_weight", "scene": "scene_weight"}
        for key, name in names.items():
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} is {value}: use a finite number of 0 or more (0 turns the criterion off).")
        if not self.allow_zero and not any(getattr(self, k) for k in names):
            raise InputError(
                "clip_weight, seam_weight and scene_weight are all 0: nothing to rank by. "
                "Set clip_weight to 1 for the paper's ranking."
            )


@dataclass
class RankTable:
    """Every criterion per sample, in the samples' order, and the order best first."""

    order: torch.Tensor  # LongTensor [N], best first
    total: torch.Tensor  # [N] weighted sum, lower is better
    criteria: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [N]
    weights: RankingWeights = RankingWeights()
    combine: str = "weighted_sum"
    labels: dict[str, str] = field(default_factory=dict)  # reward criteria: name -> label
    used: dict[str, float] = field(default_factory=dict)  # criteria in the total -> weight (ensemble modes)
    ranks: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [N] rank, 1 = best
    flags: dict[int, str] = field(default_factory=dict)  # sample -> the criterion it alone wins on
    notes: list[str] = field(default_factory=list)  # e.g. a reward model that was not available
    bad: dict[int, list[str]] = field(default_factory=dict)  # sample -> criteria with a non-finite score
    judged: list[str] = field(default_factory=list)  # per reward: the view and the prompt it judged
    demoted: bool = False  # flagged samples were put below the unflagged ones

    def label(self, name: str) -> str:
        return self.labels.get(name) or LABELS.get(name, name)

    def format(self, top_k: int | None = None) -> str:
        """A line per kept sample with every criterion; the total (what the order is by) comes last."""
        if self.combine == "weighted_sum" and not self.labels:
            text = self._format_sum(top_k)
        else:
            text = self._format_ensemble(top_k)
        return "\n".join(self.notes + self._bad_note() + [text])

    def _bad_note(self) -> list[str]:
        """One line naming every non-finite score: the reason a sample sits last."""
        if not self.bad:
            return []
        each = "; ".join(f"sample {i}: {', '.join(f'{self.label(k)} {float(self.criteria[k][i])}' for k in ks)}"
                         for i, ks in sorted(self.bad.items()))
        return [f"non-finite scores, ranked after every sample with finite scores: {each}"]

    def _marks(self, i: int) -> str:
        line = ""
        if i in self.bad:
            line += f"  ! {', '.join(self.label(k) for k in self.bad[i])} not finite: ranked last"
        if i in self.flags:
            line += (f"  ! first only on {self.label(self.flags[i])}, in the worse half on every other "
                     "criterion: that criterion may be fooled")
            line += " (demoted below the unflagged samples)" if self.demoted else ""
        return line

    def _format_ensemble(self, top_k):
        how = {"mean_rank": "weighted mean rank", "z_score": "weighted mean z-score",
               "weighted_sum": "weighted sum"}[self.combine]
        used = " + ".join(f"{w:g} x {self.label(k)}" for k, w in self.used.items())
        lines = [f"ranked {self.total.shape[0]} samples by the {how} of {used} (lower is better; "
                 "reward models: higher score is better, rank 1 = best; equal totals: lower D_CLIP first):"]
        lines += self.judged
        for r, i in enumerate(self.order[:top_k].tolist()):
            cells = "  ".join(f"{self.label(k)} {float(v[i]):.4f} (rank {float(self.ranks[k][i]):g})"
                              for k, v in self.criteria.items())
            lines.append(f"#{r + 1}: sample {i}  {cells}  total {float(self.total[i]):.4f}" + self._marks(i))
        return "\n".join(lines)

    def _format_sum(self, top_k):
        used = [f"{getattr(self.weights, k):g} x {LABELS[k]}" for k in CRITERIA if getattr(self.weights, k)]
        lines = [f"ranked {self.total.shape[0]} samples by {' + '.join(used)} (lower is better):"]
        for r, i in enumerate(self.order[:top_k].tolist()):
            cells = "  ".join(f"{LABELS[k]} {float(v[i]):.4f}" for k, v in self.criteria.items())
            lines.append(f"#{r + 1}: sample {i}  {cells}  total {float(self.total[i]):.4f}" + self._marks(i))
        return "\n".join(lines)


def ranks_of(values: torch.Tensor, higher_is_better: bool = False) -> torch.Tensor:
    """Rank of each value, 1 = best; ties share the mean of their ranks (no criterion favours order).

    A non-finite value (NaN, or an infinity a broken score gives) ranks after every finite one,
    whichever way is better: NaN compares false with everything and would otherwise come out first."""
    v = values.double()
    if higher_is_better:
        v = -v
    ok = torch.isfinite(v)
    fin = torch.where(ok, v, torch.zeros_like(v))
    both = ok[None, :] & ok[:, None]
    below = ((fin[None, :] < fin[:, None]) & both).sum(1).double()
    equal = ((fin[None, :] == fin[:, None]) & both).sum(1).double()
    n_ok, n_bad = float(ok.sum()), float((~ok).sum())
    return torch.where(ok, below + (equal + 1) / 2, torch.full_like(v, n_ok + (n_bad + 1) / 2))


def zscores(values: torch.Tensor, higher_is_better: bool = False) -> torch.Tensor:
    """(cost - mean) / std over the finite values; a criterion that cannot tell them apart gives 0.
    A non-finite value gets the worst finite z-score plus one, so it neither wins nor turns the
    whole criterion into NaN (one NaN in the std would silently zero it for every sample)."""
    v = values.double()
    if higher_is_better:
        v = -v
    ok = torch.isfinite(v)
    if not ok.any():
        return torch.zeros_like(v)
    fin = v[ok]
    std = fin.std(unbiased=False)
    z = torch.zeros_like(v) if std == 0 else (v - fin.mean()) / std
    worst = float(z[ok].max()) + 1.0
    return torch.where(ok, z, torch.full_like(v, worst))


def lone_winners(ranks: dict[str, torch.Tensor], used: list[str]) -> dict[int, str]:
    """Samples first on one criterion and in the worse half on all the others. Two criteria are
    enough: with D_CLIP and one reward model (the usual setup) a sample the reward puts first and
    D_CLIP in its worse half is exactly what a fooled reward model produces."""
    if len(used) < 2:
        return {}
    n = ranks[used[0]].shape[0]
    if n < 3:
        return {}
    flags = {}
    for i in range(n):
        for k in used:
            if ranks[k][i] <= 1 and all(ranks[j][i] > (n + 1) / 2 for j in used if j != k):
                flags[i] = k
    return flags


def non_finite(criteria: dict[str, torch.Tensor], used) -> dict[int, list[str]]:
    """Sample -> the criteria of ``used`` whose score is not finite."""
    bad: dict[int, list[str]] = {}
    for k in used:
        for i in torch.nonzero(~torch.isfinite(criteria[k])).flatten().tolist():
            bad.setdefault(i, []).append(k)
    return bad


def best_first(total: torch.Tensor, clip: torch.Tensor, bad=(), demote=()) -> torch.Tensor:
    """The order, best first, by these keys in turn: a sample with a non-finite score (``bad``) after
    every other; then a demoted one (``demote``) after the rest; then the total (lower is better, a
    non-finite total last); equal totals by D_CLIP (lower first, the paper's criterion); then the
    samples' order."""
    n = total.shape[0]
    inf = torch.full((n,), float("inf"), dtype=torch.float64, device=total.device)
    keys = [torch.where(torch.isfinite(k.double()), k.double(), inf) for k in (clip, total)]
    for group in (demote, bad):
        flag = torch.zeros(n, dtype=torch.float64, device=total.device)
        flag[list(group)] = 1.0
        keys.append(flag)
    order = torch.arange(n, device=total.device)
    for key in keys:  # least important first: each stable sort keeps the order of the one before on ties
        order = order[torch.argsort(key[order], stable=True)]
    return order


class SceneScore:
    """D_CLIP of the unmasked view against a scene prompt (weighted syntax of ``blended.prompts``)."""

    def __init__(self, clip_guidance: ClipGuidance, scene_prompt: str):
        self.clip = clip_guidance.clip
        entries = check_prompts(self.clip, parse_prompts(scene_prompt, "scene_prompt"), "scene_prompt")
        self.targets = TextTargets(self.clip, combine(entries, [], "scene_prompt"), clip_guidance.distance)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        views = resize_for_clip(images.add(1).div(2), self.clip.image_size)
        return self.targets(self.clip.encode_image(views))


def _chunked(fn, n: int, chunk: int, check=no_check) -> torch.Tensor:
    """``fn`` over slices of ``chunk`` samples; ``check`` (a caller's Cancel) runs before each."""
    parts = []
    for i in range(0, n, chunk):
        check()
        parts.append(fn(slice(i, i + chunk)))
    return torch.cat(parts)


@torch.no_grad()
def score_samples(
    images: torch.Tensor,
    mask: torch.Tensor,
    clip_guidance: ClipGuidance,
    weights: RankingWeights = RankingWeights(),
    scene_prompt: str = "",
    scene_images: torch.Tensor | None = None,
    band_px: int = 2,
    chunk: int = 16,
    check=no_check,
    rewards=(),
    combine: str = "auto",
    whole_images: torch.Tensor | None = None,
    reward_chunk=None,
    progress=None,
    on_device=None,
    demote: bool = False,
) -> RankTable:
    """Scores of samples [N,3,H,W] in [-1,1] with mask [N|1,1,H,W].

    ``scene_images`` are the views the scene prompt judges (default: ``images`` unmasked, i.e. the
    box the caller cropped); the scene criterion is computed whenever a scene prompt is given.

    ``rewards`` are ``RewardCriterion``s, scored on ``images`` (view ``mask_box``) or on
    ``whole_images`` (``whole_image``, default ``images``) in chunks of ``reward_chunk(reward, n)``
    images (default ``chunk``), one model at a time inside ``on_device(reward)`` (a context manager
    that brings it to the work device and frees it after); ``check`` runs before every chunk and
    ``progress(done, total)`` after it. Unavailable ones add their note and are left out. A
    ``whole_image`` reward is judged against ``scene_prompt`` when one is given, else (like a
    ``mask_box`` one) against the edit's prompts. ``demote`` puts flagged lone winners below the rest.
    """
    n = _check_batch(images, clip_guidance)
    if mask.shape[0] == 1:
        mask = mask.expand(n, *mask.shape[1:])
    criteria = {"clip": _chunked(lambda s: clip_guidance.score(images[s], mask[s]), n, chunk, check)}
    criteria["seam"] = seam_score(images.add(1).div(2), mask, band_px)
    views = images if scene_images is None else scene_images
    criteria.update(_scene_criterion(clip_guidance, scene_prompt, views, weights, n, chunk, check))
    if combine not in COMBINES:
        raise InputError(f"combine '{combine}': choose one of {', '.join(COMBINES)}.")
    views = {"mask_box": images, "whole_image": images if whole_images is None else whole_images}
    scored = _score_rewards(views, _reward_prompts(clip_guidance, scene_prompt), rewards, criteria, chunk, check,
                            reward_chunk, progress, on_device)
    labels, reward_weights, notes, judged = scored
    if combine == "auto":
        combine = "mean_rank" if any(reward_weights.values()) else "weighted_sum"
    if combine == "weighted_sum" and not labels:
        return _weighted_sum(criteria, weights, notes)
    table = _ensemble(criteria, weights, reward_weights, labels, combine, notes, demote)
    table.judged = judged
    return table


def _check_batch(images: torch.Tensor, clip_guidance: ClipGuidance) -> int:
    """The number of samples, once it is clear there are some and CLIP to rank them by."""
    if clip_guidance is None:
        raise InputError("ranking needs CLIP guidance: connect the CLIP guidance loss node.")
    n = images.shape[0]
    if n == 0:
        raise InputError("no images to rank.")
    return n


def _scene_criterion(clip_guidance, scene_prompt, views, weights: RankingWeights, n, chunk, check) -> dict:
    """``{"scene": D_CLIP of each view against the scene prompt}`` when a prompt is given (listed even
    at weight 0, so a user sees it before weighting it), else nothing; a weight without a prompt is
    a mistake worth a message, not a silent 0."""
    if (scene_prompt or "").strip():
        scene = SceneScore(clip_guidance, scene_prompt)
        if views.shape[0] != n:
            raise InputError(f"scene images: {views.shape[0]} views for {n} samples.")
        return {"scene": _chunked(lambda s: scene(views[s]), n, chunk, check)}
    if weights.scene:
        raise InputError(
            f"scene_weight is {weights.scene:g} but scene_prompt is empty: describe the whole picture "
            "(e.g. 'a kitchen table with a bowl of cherries'), or set scene_weight to 0."
        )
    return {}


def _weighted_sum(criteria, weights: RankingWeights, notes) -> RankTable:
    """The order by the weighted sum of D_CLIP, seam and scene: the paper's ranking (clip alone) and
    what a graph without reward models always ranked by, kept exact so such a graph's order does not move."""
    total = None
    for name in CRITERIA:  # a criterion of weight 0 is not added at all: 0 * inf would be nan
        w = getattr(weights, name)
        if w:
            term = criteria[name] if w == 1.0 else w * criteria[name]
            total = term if total is None else total + term
    if total is None:
        raise InputError("clip_weight, seam_weight and scene_weight are all 0 and no reward model with a weight "
                         "is available: nothing to rank by. Set clip_weight to 1 for the paper's ranking.")
    bad = non_finite(criteria, [k for k in CRITERIA if getattr(weights, k)])
    order = best_first(total, criteria["clip"], bad)
    return RankTable(order, total, criteria, weights, notes=notes, bad=bad)


def _reward_prompts(clip_guidance, scene_prompt) -> dict[str, tuple[str, list]]:
    """Per view, (what the prompt is, its (text, weight) pairs): the edit's prompts judge the mask's
    box; the whole picture is judged against the scene prompt when one is given, since the edit's
    prompt describes only what goes inside the mask."""
    edit = [(p.text, p.weight) for p in clip_guidance.prompts.prompts if p.weight > 0]
    whole = ("edit prompt", edit)
    if (scene_prompt or "").strip():
        scene = combine(parse_prompts(scene_prompt, "scene_prompt"), [], "scene_prompt")
        whole = ("scene prompt", [(p.text, p.weight) for p in scene.prompts if p.weight > 0])
    return {"mask_box": ("edit prompt", edit), "whole_image": whole}


def _judged_line(c, prompts: dict) -> str:
    """What one reward saw and read: its view and the prompt, in the words of the scores text."""
    where = {"mask_box": "the mask's box", "whole_image": "the whole picture"}[c.view]
    if not getattr(c.reward, "uses_prompt", True):
        return f"  {c.label}: judged on {where}, no prompt (it rates the image alone)"
    what, pairs = prompts[c.view]
    text = " | ".join(t if len(pairs) == 1 else f"{t}:{w:.2g}" for t, w in pairs)
    return f"  {c.label}: judged on {where} against the {what} '{text}'"


def _score_rewards(views, prompts, rewards, criteria, chunk, check, reward_chunk, progress, on_device):
    """Every available reward criterion's scores into ``criteria``; (labels, weights, notes, judged)."""
    import contextlib

    n = views["mask_box"].shape[0]
    labels, weights, notes, judged = {}, {}, [], []
    available = []
    for c in rewards or ():
        if c.reward is None:
            notes.append(f"{c.label} not used: {c.note}" if c.note else f"{c.label} not used.")
        else:
            available.append(c)
    notes = ["; ".join(notes)] if notes else []  # one line however many models were missing
    sizes = [max(1, int(reward_chunk(c.reward, n) if reward_chunk else chunk)) for c in available]
    total_chunks = sum(math.ceil(n / s) for s in sizes)
    done = 0
    for c, size in zip(available, sizes):
        x = views[c.view]
        if x.shape[0] != n:
            raise InputError(f"{c.label}: {x.shape[0]} views for {n} samples.")
        key = f"reward{len(labels)}"
        parts = []
        with (on_device(c.reward) if on_device else contextlib.nullcontext()):
            for i in range(0, n, size):
                check()
                parts.append(c.reward.score(x[i:i + size].add(1).div(2), prompts[c.view][1]).float().cpu())
                done += 1
                if progress is not None:
                    progress(done, total_chunks)
        criteria[key] = torch.cat(parts).to(criteria["clip"].device)
        labels[key], weights[key] = c.label, float(c.weight)
        judged.append(_judged_line(c, prompts))
    return labels, weights, notes, judged


def _ensemble(criteria, weights: RankingWeights, reward_weights, labels, combine, notes, demote=False) -> RankTable:
    higher = set(labels)  # reward models: higher is better; D_CLIP, seam, scene: lower is better
    used = {k: float(getattr(weights, k)) for k in CRITERIA if k in criteria and getattr(weights, k)}
    used.update({k: w for k, w in reward_weights.items() if w})
    if not used:
        raise InputError("every criterion has weight 0: nothing to rank by. "
                         "Set clip_weight or a reward weight above 0.")
    ranks = {k: ranks_of(v, k in higher) for k, v in criteria.items()}
    if combine == "mean_rank":
        terms = {k: ranks[k] for k in used}
    elif combine == "z_score":
        terms = {k: zscores(criteria[k], k in higher) for k in used}
    else:  # the raw sum: a non-finite score is +inf, the worst cost (a reward's +inf would otherwise win)
        terms = {k: _cost(criteria[k], k in higher) for k in used}
    total = sum(w * terms[k] for k, w in used.items())
    if combine != "weighted_sum":
        total = total / sum(used.values())
    key = total.double()
    if combine == "mean_rank":  # ranks are halves: equal sums must compare equal despite float rounding
        key = torch.round(key * 1e9) / 1e9
    total = total.float()
    flags = lone_winners(ranks, list(used))
    bad = non_finite(criteria, used)
    order = best_first(key, criteria["clip"], bad, flags if demote else ())
    return RankTable(order, total, criteria, weights, combine, labels, used, ranks, flags, notes, bad,
                     demoted=bool(demote and flags))


def _cost(values: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    """A criterion as a cost (lower is better), +inf where the score is not finite."""
    v = -values.double() if higher_is_better else values.double()
    return torch.where(torch.isfinite(v), v, torch.full_like(v, float("inf")))


def rank(
    images: torch.Tensor,
    mask: torch.Tensor,
    clip_guidance: ClipGuidance,
    chunk: int = 16,
    weights: RankingWeights = RankingWeights(),
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, scores): indices best first (lowest total), and the totals in that order."""
    table = score_samples(images, mask, clip_guidance, weights, chunk=chunk, **kwargs)
    return table.order, table.total[table.order]
