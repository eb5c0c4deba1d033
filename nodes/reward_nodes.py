"""Reward models for the ranking: one loader (a model combo) and a criterion node that chains.

Reward models are optional judges. A missing one downloads on first use like the CLIP loader;
where it cannot be had (offline, no file), the loader by default hands on an ``Unavailable`` with
a one-line note instead of failing the run, and Blended Rank Results ranks by what is left and
prints the note.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from comfy_api.latest import io

from ..blended.downloads import REWARD_WEIGHTS, ensure_file
from ..blended.errors import CheckpointError
from ..blended.ranking import REWARD_VIEWS, RewardCriterion
from ..blended.reward_models import LABELS, load_reward
from . import comfy_glue as glue
from .types import CriteriaSocket, RewardSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"
MODELS = {"HPSv2.1": "hpsv2", "PickScore v1": "pickscore", "LAION aesthetic v2": "aesthetic"}
IF_MISSING = ("skip with a note", "error")


@dataclass(frozen=True)
class Unavailable:
    """A reward model that could not be loaded; the ranking leaves it out and prints ``note``."""

    label: str
    note: str


def _file(entry, download: bool) -> str:
    """The file of ``entry`` in its models/ folder, downloaded there first (progress, resumable,
    verified where a hash is known) when missing and allowed."""
    found = glue.clip_file(entry.filename, hint=False) if entry.subfolder == "blended_clip" else \
        glue.model_path(entry.subfolder, entry.filename)
    if found is not None:
        return found
    return str(ensure_file(entry, glue.default_folder(entry.subfolder), allow_download=download,
                           progress=glue.DownloadProgress()))


class BlendedRewardModelLoader(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedRewardModelLoader",
            display_name="Blended Reward Loader",
            category=CATEGORY,
            description="A human-preference reward model for Blended Rank Results: HPSv2.1, PickScore v1 or the "
            "LAION aesthetic predictor v2. Each has its own models/ folder and is downloaded there on first use.",
            inputs=[
                io.Combo.Input("reward_model", options=list(MODELS), default="HPSv2.1",
                               tooltip="HPSv2.1: models/blended_hpsv2/HPS_v2.1_compressed.pt (open_clip ViT-H-14). "
                               "PickScore v1: models/blended_pickscore/PickScore_v1.safetensors. LAION aesthetic "
                               "v2: models/blended_aesthetic/sac+logos+ava1-l14-linearMSE.pth plus OpenAI's "
                               "ViT-L-14.pt in models/blended_clip (prompt-independent)."),
                io.Combo.Input("if_missing", options=list(IF_MISSING), default=IF_MISSING[0], optional=True,
                               tooltip="When the file is missing and cannot be downloaded (offline): 'skip with a "
                               "note' ranks without this model and says so in the scores; 'error' stops the run."),
            ],
            outputs=[RewardSocket.Output(display_name="reward")],
        )

    @classmethod
    def execute(cls, reward_model, if_missing=IF_MISSING[0]) -> io.NodeOutput:
        kind = MODELS.get(reward_model)
        if kind is None:
            raise CheckpointError(f"reward_model '{reward_model}': choose one of {', '.join(MODELS)}.")
        try:
            paths = [_file(entry, download=True) for entry in REWARD_WEIGHTS[kind]]
        except CheckpointError as e:
            if if_missing == "error":
                raise
            logging.warning("Blended Diffusion: %s", e)
            first = str(e).split(" Download it from")[0]
            return io.NodeOutput(Unavailable(LABELS[kind], f"{first} (ranked without it; see the console)."))
        glue.check_interrupt()
        with glue.normal_tensors():
            reward = load_reward(kind, paths[0], paths[1] if len(paths) > 1 else None, device=glue.offload_device())
        return io.NodeOutput(reward)


class BlendedRewardCriterion(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedRewardCriterion",
            display_name="Blended Reward Criterion",
            category=CATEGORY,
            description="Adds a reward model, with its weight and view, to the criteria of Blended Rank Results. "
            "Chain several (criteria in, criteria out); the ranking averages their ranks.",
            inputs=[
                RewardSocket.Input("reward", tooltip="From Blended Reward Loader."),
                io.Float.Input("weight", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="Weight of this model's rank in the average (D_CLIP has clip_weight; "
                               "1 = as much as D_CLIP). 0 lists its scores without ranking by them."),
                io.Combo.Input("view", options=list(REWARD_VIEWS), default="mask_box",
                               tooltip="mask_box: the mask's box with a margin (the edit and its immediate "
                               "surroundings); whole_image: the full picture (judges the edit in its scene), "
                               "against Rank Results' scene_prompt when one is given, else the edit's prompt."),
                CriteriaSocket.Input("criteria", optional=True,
                                     tooltip="Criteria from another Blended Reward Criterion, to chain several."),
            ],
            outputs=[CriteriaSocket.Output(display_name="criteria")],
        )

    @classmethod
    def execute(cls, reward, weight=1.0, view="mask_box", criteria=None) -> io.NodeOutput:
        if isinstance(reward, Unavailable):
            this = RewardCriterion(None, weight, view, note=reward.note, name=reward.label)
        else:
            this = RewardCriterion(reward, weight, view)
        return io.NodeOutput(tuple(criteria or ()) + (this,))
