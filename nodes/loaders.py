"""Loader nodes: the ADM diffusion model, CLIP and LPIPS.

Models are loaded onto ComfyUI's offload device (the CPU unless VRAM is plentiful) and moved to
the work device only while a sampler or metric runs, the way ComfyUI treats its own models.
The diffusion loader always lists OpenAI's release files, present or not, so a new user sees
what to get; picking a missing one downloads it when online or says where it goes.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..blended.clip_model import CLIP_FOLDER, HUB_DEFAULT, load_clip
from ..blended.downloads import CLIP_VIT_B16, KNOWN_WEIGHTS, downloads_disabled, ensure_file
from ..blended.errors import CheckpointError
from ..blended.pixel.checkpoint import load_diffusion_model
from . import comfy_glue as glue
from .types import ClipSocket, DiffusionModelSocket, LpipsSocket
from .validation import BlendedNode

CATEGORY = "blended_diffusion"
LPIPS_DOWNLOAD = "vgg16 (torchvision download)"


class BlendedDiffusionModelLoader(BlendedNode):
    FILE_INPUTS = ("model_name",)  # a missing file gets the loader's own message

    @classmethod
    def define_schema(cls):
        files = glue.model_files("blended_diffusion")
        options = files + [name for name in KNOWN_WEIGHTS if name not in files]
        return io.Schema(
            node_id="BlendedDiffusionModelLoader",
            display_name="Blended Model Loader",
            category=CATEGORY,
            description="Loads an OpenAI guided-diffusion (ADM) UNet; the architecture is read off the weights.",
            inputs=[
                io.Combo.Input(
                    "model_name",
                    display_name="file",  # the file name needs the width
                    options=options,
                    default="256x256_diffusion_uncond.pt" if "256x256_diffusion_uncond.pt" in options else options[0],
                    tooltip="File in models/blended_diffusion. 256x256_diffusion_uncond.pt is the paper's model; "
                    "a listed OpenAI file that is missing is downloaded on first use (2.2 GB) when online.",
                ),
            ],
            outputs=[DiffusionModelSocket.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model_name) -> bool | str:
        """ComfyUI 0.3.75 never checks a V3 combo's value; newer releases refuse one that is not in
        the options at queue time ("Value not in list") unless the node validates that input itself.
        So the loader does, on both: any file name is accepted here and ``execute`` downloads a
        known OpenAI file, loads a present one, or says where a missing one belongs, the same
        message on every ComfyUI."""
        if not isinstance(model_name, str):
            return f"model_name must be a file name, not {type(model_name).__name__}."
        return True

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        entry = KNOWN_WEIGHTS.get(model_name)
        if entry is not None and glue.model_path("blended_diffusion", model_name) is None:
            # download (progress on the node, resumable, verified), or say from where
            path = ensure_file(entry, glue.default_folder("blended_diffusion"), progress=glue.DownloadProgress())
        else:
            path = glue.require_file("blended_diffusion", model_name, "Diffusion model", "pick another file")
        glue.check_interrupt()
        with glue.normal_tensors():
            model = load_diffusion_model(path, device=glue.offload_device(), check=glue.check_interrupt)
        return io.NodeOutput(model)


class BlendedCLIPLoader(BlendedNode):
    FILE_INPUTS = ("clip_name",)  # a missing file gets the loader's own message

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedCLIPLoader",
            display_name="Blended CLIP Loader",
            category=CATEGORY,
            description="CLIP ViT for guidance, ranking and evaluation (OpenAI ViT-B/16 with QuickGELU by default).",
            inputs=[
                io.Combo.Input(
                    "clip_name",
                    display_name="file",  # the file name needs the width
                    options=[HUB_DEFAULT] + glue.model_files(CLIP_FOLDER),
                    default=HUB_DEFAULT,
                    tooltip=f"'{HUB_DEFAULT}' uses OpenAI's ViT-B-16.pt from models/{CLIP_FOLDER}, downloaded "
                    "there on first use (0.35 GB, progress on this node, SHA-256 checked); "
                    f"or pick a CLIP file in models/{CLIP_FOLDER} (OpenAI's ViT-B-16.pt, or an open_clip "
                    ".safetensors).",
                ),
            ],
            outputs=[ClipSocket.Output(display_name="clip")],
        )

    @classmethod
    def validate_inputs(cls, clip_name) -> bool | str:
        """Instead of ComfyUI's "value not in list": a workflow may name a file a user put in
        models/clip before the pack had its own folder (found, with a hint), and a missing file is
        told where it belongs."""
        if not isinstance(clip_name, str):
            return f"clip_name must be a file name or '{HUB_DEFAULT}', not {type(clip_name).__name__}."
        if clip_name in (HUB_DEFAULT, CLIP_VIT_B16.filename) or glue.clip_file(clip_name, hint=False):
            return True  # OpenAI's ViT-B-16.pt, missing, is downloaded as the hub tag's weights
        return cls._missing(clip_name)

    @staticmethod
    def _hub_weights():
        """The hub tag's weights as OpenAI's ViT-B-16.pt in models/blended_clip: downloaded there
        once, visibly and verified, when missing. Offline, or if that download fails, the tag itself
        goes to open_clip (its cache, or its clear message about where the file goes)."""
        folder = glue.default_folder(CLIP_FOLDER)
        found = glue.clip_file(CLIP_VIT_B16.filename)
        if found is not None:
            return found
        if downloads_disabled():
            return HUB_DEFAULT
        try:
            return ensure_file(CLIP_VIT_B16, folder, progress=glue.DownloadProgress())
        except CheckpointError as e:
            print(f"Blended Diffusion: {e} Trying open_clip's hub download instead.", flush=True)
            return HUB_DEFAULT

    @staticmethod
    def _missing(clip_name: str) -> str:
        return (f"CLIP file '{clip_name}' is not in {glue.default_folder(CLIP_FOLDER)}. Put it there, "
                f"or choose '{HUB_DEFAULT}'.")

    @classmethod
    def execute(cls, clip_name) -> io.NodeOutput:
        source = clip_name
        if clip_name == HUB_DEFAULT or (clip_name == CLIP_VIT_B16.filename and glue.clip_file(clip_name) is None):
            source = cls._hub_weights()
        else:
            source = glue.clip_file(clip_name)
            if source is None:
                raise CheckpointError(cls._missing(clip_name))
        glue.check_interrupt()
        with glue.normal_tensors():
            clip = load_clip(source, device=glue.offload_device())
        glue.check_interrupt()
        return io.NodeOutput(clip)


class BlendedLPIPSLoader(BlendedNode):
    FILE_INPUTS = ("lpips_name",)  # a missing file gets the loader's own message

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedLPIPSLoader",
            display_name="Blended LPIPS Loader",
            category=CATEGORY,
            description="LPIPS-VGG perceptual distance, for the background loss (Algorithm 1) and the evaluation node.",
            inputs=[
                io.Combo.Input(
                    "lpips_name",
                    display_name="weights",  # the file name needs the width
                    options=[LPIPS_DOWNLOAD] + glue.model_files("lpips"),
                    default=LPIPS_DOWNLOAD,
                    tooltip="'vgg16 (torchvision download)' uses torchvision's ImageNet VGG16 (fetched once, 528 MB) "
                    "with the linear heads shipped in the lpips package; or a converted LPIPS file in models/lpips.",
                ),
            ],
            outputs=[LpipsSocket.Output(display_name="lpips")],
        )

    @classmethod
    def validate_inputs(cls, lpips_name) -> bool | str:
        """As the diffusion loader's: the loader's own message instead of newer ComfyUI's "Value not in list"."""
        if not isinstance(lpips_name, str):
            return f"lpips_name must be a file name or '{LPIPS_DOWNLOAD}', not {type(lpips_name).__name__}."
        return True

    @classmethod
    def execute(cls, lpips_name) -> io.NodeOutput:
        from ..blended.lpips_model import load_lpips

        weights = None
        if lpips_name != LPIPS_DOWNLOAD:
            weights = glue.require_file("lpips", lpips_name, "LPIPS file", f"choose '{LPIPS_DOWNLOAD}'")
        glue.check_interrupt()
        with glue.normal_tensors():
            model = load_lpips(weights, device=glue.offload_device())
        glue.check_interrupt()
        return io.NodeOutput(model)

