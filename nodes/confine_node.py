"""Blended Confine Edit: a maskless instruction edit (Flux Kontext, Qwen-Image-Edit, Flux.2) kept to
the region it changed, the rest of the photo the source's own pixels."""

from __future__ import annotations

from comfy_api.latest import io

from ..blended.latent.change_mask import ChangeSettings, confine
from ..blended.latent.seam import MODES as SEAM_MODES
from . import comfy_glue as glue
from .images import to_comfy_image, to_comfy_mask, to_rgb01
from .validation import BlendedNode


class BlendedConfineEdit(BlendedNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BlendedConfineEdit",
            display_name="Blended Confine Edit",
            category="blended_diffusion/latent",
            description="Finds what an instruction edit changed (after undoing its global colour shift and a small "
            "shift or zoom) and pastes only that into the source: outside the found region every pixel is the "
            "source's, bit for bit. No model call; its mask can also drive Blended Latent Sampler for a second, "
            "blended run.",
            inputs=[
                io.Image.Input("source", tooltip="The photo the editor was given."),
                io.Image.Input("edited", tooltip="The editor's result (VAEDecode), any size; one per source or a batch "
                               "for one source."),
                io.Float.Input("threshold", default=0.08, min=0.01, max=0.9, step=0.01,
                               tooltip="Smallest change (0..1, max over channels, after the alignment) that counts "
                               "as edited. Lower finds more."),
                io.Int.Input("grow_px", default=4, min=0, max=512,
                             tooltip="Grow the found region by this many pixels."),
                io.Boolean.Input("align", default=True, tooltip="Undo a shift of up to 2 % and a zoom of up to 3 % "
                                 "and a global colour shift before comparing. Off: plain difference."),
                io.Combo.Input("seam", options=list(SEAM_MODES), default="gradient domain",
                               tooltip="How the edit meets the source: exact paste, feather, colour match, gradient "
                               "domain (Poisson blend; removes leftover colour offsets at the border)."),
            ],
            outputs=[
                io.Image.Output("confined", display_name="images"),
                io.Mask.Output("found_mask", display_name="mask"),
                io.String.Output("report"),
            ],
        )

    @classmethod
    def execute(cls, source, edited, threshold, grow_px, align, seam) -> io.NodeOutput:
        settings = ChangeSettings(threshold=threshold, grow_px=grow_px, align=align, match_colour=align)
        out, found, text = confine(to_rgb01(edited, "edited"), to_rgb01(source, "source"), settings, seam)
        return io.NodeOutput(to_comfy_image(out), to_comfy_mask(found), text,
                             ui=glue.text_report(text, "blended_region_report"))
