"""A small random SAM 3.1 checkpoint in the real file layout, for the SAM3 template tests (ComfyUI 0.33+).

The file is what ``CheckpointLoaderSimple`` loads as core's blueprints do (``sam3.1_multiplex_fp16``):
the detector and the tracker (``SAM3Model``, ComfyUI's own class, built with ``image_model="SAM31"``)
and the text encoder under ``detector.backbone.language_backbone.encoder.`` in open_clip's names. The
names are core's loader run backwards (``supported_models.SAM3.process_unet_state_dict`` and
``process_clip_state_dict``): attention projections that core splits are stored fused
(``in_proj_weight``), the tracker under ``tracker.model.``, the SAM decoder's MLPs as ``lin1``/``lin2``.
``layout_round_trips`` checks that core's own conversion maps the file back onto the classes' keys.

Only the vision trunk is shrunk: ComfyUI 0.33's detection fixes every SAM3 size (it returns just
``image_model``), so its 32 ViT blocks (446 M of the 507 M parameters) would be built whatever the file
holds, at about 4 TFLOP per 1008 px frame: minutes per frame on a CPU. The file holds ``TRUNK_DEPTH``
blocks and ``DEPTH_HOOK`` (a test-only module put in the server's custom_nodes) adds the block count
read off the keys to what core's detection returns, as detection does for the families that count their
layers; ``ViTDet`` takes it as its own ``depth`` argument. Every other size is the real one: the text
encoder (fixed config, 24 layers of width 1024), the detector's transformer, heads and FPN, the tracker.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.sd15_fixture import comfy_engine_path, write_random_checkpoint

SAM31_FILE = "sam3.1_multiplex_fp16.safetensors"  # the name core's SAM3 blueprints load
TRUNK_DEPTH = 1
BLOCKS = "detector.backbone.vision_backbone.trunk.blocks."
TEXT_PREFIX = "detector.backbone.language_backbone.encoder."

DEPTH_HOOK = '''
"""Test only: core's SAM3 detection with the trunk's block count read off the file (core fixes 32)."""
import comfy.model_detection

_detect = comfy.model_detection.detect_unet_config
BLOCKS = "detector.backbone.vision_backbone.trunk.blocks."


def detect_unet_config(state_dict, key_prefix, metadata=None):
    config = _detect(state_dict, key_prefix, metadata=metadata)
    if isinstance(config, dict) and config.get("image_model") in ("SAM3", "SAM31"):
        config["depth"] = len({k[len(BLOCKS):].split(".")[0] for k in state_dict if k.startswith(BLOCKS)})
    return config


comfy.model_detection.detect_unet_config = detect_unet_config
NODE_CLASS_MAPPINGS = {}
'''


def sam31_model(depth: int = TRUNK_DEPTH):
    """ComfyUI's SAM3Model (the SAM 3.1 multiplex variant) on the meta device, ``depth`` trunk blocks."""
    comfy_engine_path()
    import comfy.ops
    from comfy.ldm.sam3.detector import SAM3Model

    with torch.device("meta"):
        return SAM3Model(device="meta", operations=comfy.ops.disable_weight_init, image_model="SAM31", depth=depth)


def sam3_text_encoder():
    """Core's SAM3 text encoder (``SAM3ClipModelWrapper``: CLIP text, 24 layers, width 1024) on meta."""
    comfy_engine_path()
    from comfy.text_encoders.sam3_clip import SAM3ClipModelWrapper

    with torch.device("meta"):
        return SAM3ClipModelWrapper(device="meta", dtype=torch.float32)


def fused_attention(model) -> set[str]:
    """The detector's attention modules core splits from one ``in_proj`` (``SplitMHA``)."""
    from comfy.ldm.sam3.detector import SplitMHA

    return {name for name, module in model.named_modules() if isinstance(module, SplitMHA)}


def model_file_shapes(model) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The detector and tracker keys as the released file names them (core's conversion reversed)."""
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    fused = fused_attention(model)
    for k, v in model.state_dict().items():
        module, _, leaf = k.rpartition(".")
        owner, _, proj = module.rpartition(".")
        if owner in fused and proj in ("q_proj", "k_proj", "v_proj"):
            if proj == "q_proj":  # q, k and v stacked: three times the rows
                shapes[f"{owner}.in_proj_{leaf}"] = ((3 * v.shape[0], *v.shape[1:]), v.dtype)
            continue
        if "sam_mask_decoder.transformer." in k:
            k = k.replace(".mlp.0.", ".mlp.lin1.").replace(".mlp.2.", ".mlp.lin2.").replace(".norm_final.",
                                                                                          ".norm_final_attn.")
        if k.startswith("tracker."):
            k = "tracker.model." + k[len("tracker."):]
        shapes[k] = (tuple(v.shape), v.dtype)
    return shapes


# ComfyUI's CLIP text names (transformers) -> open_clip's, as the released file has them.
OPEN_CLIP_NAMES = (
    ("embeddings.position_embedding.weight", "positional_embedding"),
    ("embeddings.token_embedding.weight", "token_embedding.weight"),
    ("final_layer_norm.", "ln_final."),
    ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."),
    ("self_attn.out_proj.", "attn.out_proj."), ("encoder.layers.", "transformer.resblocks."),
)


def text_file_shapes(encoder) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The text encoder's keys as the released file names them (open_clip, q/k/v fused)."""
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for k, v in encoder.state_dict().items():
        if not k.startswith("sam3_clip.transformer.text_model."):
            continue  # text_projection / logit_scale: unused by SAM3 (no projected pooled output)
        name = k[len("sam3_clip.transformer.text_model."):]
        if ".self_attn." in name and name.split(".")[-2] in ("q_proj", "k_proj", "v_proj"):
            if ".q_proj." in name:
                leaf = name.rsplit(".", 1)[1]
                block = name.split(".self_attn.")[0].replace("encoder.layers.", "transformer.resblocks.")
                shapes[f"{TEXT_PREFIX}{block}.attn.in_proj_{leaf}"] = ((3 * v.shape[0], *v.shape[1:]), v.dtype)
            continue
        for hf, oc in OPEN_CLIP_NAMES:
            name = name.replace(hf, oc)
        shapes[TEXT_PREFIX + name] = (tuple(v.shape), v.dtype)
    return shapes


def checkpoint_shapes(depth: int = TRUNK_DEPTH) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {**model_file_shapes(sam31_model(depth)), **text_file_shapes(sam3_text_encoder())}


def write_tiny_sam31(path: Path, seed: int = 8) -> Path:
    """The checkpoint with random weights (fan-in scaled, norm scales 1, biases 0), fp16 as released."""
    shapes = {k: (shape, torch.float16) for k, (shape, _) in checkpoint_shapes().items()}
    return write_random_checkpoint(path, shapes, seed)


SCORING = "detector.dot_prod_scoring."


def set_detection_scores(path: Path, found: bool) -> Path:
    """Make the file's phrase scoring give every query the same score, whatever the photo and words:
    above every threshold below 1 (``found``: SAM3_Detect keeps its first ``max_detections`` queries
    and SAM's decoder draws their masks, as at threshold 0) or below every one above 0 (it finds
    nothing, so its mask is empty). Core scores a query by ``hs_proj(query) . prompt_proj(pooled words) / sqrt(256)``;
    with both weights 0 and the biases 1 and +-1 that is +-16, clamped by core to +-12 (sigmoid 0.999994
    or 0.000006). The four tensors are rewritten in place, in the file's fp16."""
    import json
    import struct

    import numpy as np

    with open(path, "r+b") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        values = {"hs_proj.weight": 0.0, "hs_proj.bias": 1.0, "prompt_proj.weight": 0.0,
                  "prompt_proj.bias": 1.0 if found else -1.0}
        for name, value in values.items():
            entry = header[SCORING + name]
            assert entry["dtype"] == "F16", entry
            f.seek(8 + size + entry["data_offsets"][0])
            f.write(np.full(entry["shape"], value, np.float16).tobytes())
    return path


def layout_round_trips(depth: int = TRUNK_DEPTH) -> tuple[set[str], set[str], set[str], set[str]]:
    """Core's own conversion (SAM31's ``process_unet_state_dict`` / ``process_clip_state_dict``) applied
    to the file's keys: (model keys missing, model keys left over, text keys missing, text keys left over)."""
    comfy_engine_path()
    import comfy.supported_models

    model, encoder = sam31_model(depth), sam3_text_encoder()
    sd = {k: torch.empty(shape, device="meta") for k, (shape, _) in checkpoint_shapes(depth).items()}
    config = comfy.supported_models.SAM31({"image_model": "SAM31"})
    unet = config.process_unet_state_dict(dict(sd))
    text = config.process_clip_state_dict({})
    want_model, want_text = set(model.state_dict()), {k for k in encoder.state_dict() if ".text_model." in k}
    return want_model - set(unet), set(unet) - want_model, want_text - set(text), set(text) - want_text
