"""Weighted and negative prompts, as typed into a ComfyUI text box.

Syntax (the same for the prompt, the negative prompt and the ranking's scene prompt)::

    a bowl of cherries
    red fruit:0.5
    a painting | a photo:2

One prompt per line, or several on a line separated by ``|``; a prompt may end in ``:weight``
(any number, default 1). A trailing ``:number`` is always read as a weight, so write
"ratio 16 to 9" rather than "ratio 16:9". In the prompt box a negative weight pushes away (Disco
Diffusion's convention); in the negative-prompt box every weight is a strength that pushes away,
so it must not be negative itself.

Weights are normalised by the sum of the *positive* weights, not by the sum of all weights as Disco
Diffusion does: a prompt plus a negative prompt of the same weight is the everyday case in ComfyUI,
and dividing by their sum (zero) would forbid it. So λ keeps its meaning (λ times the weighted mean
distance to what is asked for) and a negative prompt adds a push away of its own relative strength.
One prompt of weight 1 normalises to exactly 1.0, which keeps the paper's D_CLIP bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError

SYNTAX_HELP = (
    "One prompt per line (or separated by |); end a prompt with :weight to weigh it, e.g. "
    "'a bowl of cherries' or 'a bowl of cherries:1 | red fruit:0.5'. Default weight 1."
)


@dataclass(frozen=True)
class WeightedPrompt:
    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class PromptSet:
    """Distinct prompts with their normalised weights (the positive ones sum to 1)."""

    prompts: tuple[WeightedPrompt, ...]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    @property
    def weights(self) -> list[float]:
        return [p.weight for p in self.prompts]

    @property
    def positive(self) -> list[str]:
        return [p.text for p in self.prompts if p.weight > 0]

    @property
    def is_single(self) -> bool:
        """One prompt of weight 1: the paper's D_CLIP."""
        return len(self.prompts) == 1 and self.prompts[0].weight == 1.0

    def describe(self) -> str:
        return " | ".join(f"{p.text}:{p.weight:g}" for p in self.prompts)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _split_weight(entry: str, input_name: str) -> WeightedPrompt:
    text, colon, tail = entry.rpartition(":")
    if not colon:
        return WeightedPrompt(entry)
    try:
        weight = float(tail.strip())
    except ValueError:
        return WeightedPrompt(entry)  # a colon inside the prompt, not a weight
    text = text.strip()
    if not math.isfinite(weight):
        raise InputError(
            f"{input_name}: '{_short(entry)}' has weight {tail.strip()}; weights must be finite numbers, e.g. ':0.5'."
        )
    if not text:
        raise InputError(f"{input_name}: ':{tail.strip()}' is a weight without a prompt; write the text before it.")
    return WeightedPrompt(text, weight)


def parse_prompts(text: str | None, input_name: str = "prompt") -> list[WeightedPrompt]:
    """Entries of a prompt box, in order, with their weights as written (not normalised)."""
    if text is not None and not isinstance(text, str):
        raise InputError(f"{input_name} must be text, got {type(text).__name__}.")
    entries = [e.strip() for line in (text or "").splitlines() for e in line.split("|")]
    return [_split_weight(" ".join(e.split()), input_name) for e in entries if e]


def combine(
    positive: list[WeightedPrompt],
    negative: list[WeightedPrompt] = (),
    input_name: str = "prompt",
    negative_name: str = "negative_prompt",
) -> PromptSet:
    """One normalised set: negatives enter with a minus sign, duplicates are merged, zeros dropped."""
    if not positive:
        what = "what should appear inside the mask" if input_name == "prompt" else "the whole picture"
        raise InputError(f"{input_name} is empty: describe {what}, e.g. 'a red ball'. " + SYNTAX_HELP)
    for p in negative:
        if p.weight < 0:
            raise InputError(
                f"{negative_name}: '{_short(p.text)}' has weight {p.weight:g}; in the negative prompt a weight is a "
                f"strength (0 or more), the minus is implied. Write '{_short(p.text)}:{-p.weight:g}', or move it "
                f"to {input_name} with its negative weight."
            )
    merged: dict[str, float] = {}
    for p in positive:
        merged[p.text] = merged.get(p.text, 0.0) + p.weight
    for p in negative:
        merged[p.text] = merged.get(p.text, 0.0) - p.weight
    total = sum(w for w in merged.values() if w > 0)
    if total <= 0:
        asked = [p for p in positive if p.weight > 0]
        if asked:
            raise InputError(
                f"the weights cancel out: what {input_name} asks for "
                f"({', '.join(repr(_short(p.text)) for p in asked)}) is taken back by an equal or larger negative "
                f"weight for the same text (in {input_name} or {negative_name}). Remove the repeat, or give "
                "something a net positive weight."
            )
        given = "; ".join(f"{_short(p.text)}:{p.weight:g}" for p in positive)
        raise InputError(
            f"{input_name} has no prompt with a positive weight ({given}): "
            "guidance needs something to move towards. Give at least one prompt a positive weight, e.g. ':1'."
        )
    kept = tuple(WeightedPrompt(t, w / total) for t, w in merged.items() if w != 0)
    return PromptSet(kept)


def prompt_set(
    text: str, negative: str = "", input_name: str = "prompt", negative_name: str = "negative_prompt"
) -> PromptSet:
    """Parse and combine a prompt box and a negative-prompt box."""
    return combine(parse_prompts(text, input_name), parse_prompts(negative, negative_name), input_name, negative_name)
