"""The template browser's card picture: what the template does to which photo, not a shrunken graph.

A card shows the example input the template ships with, the region it edits drawn over it, and the
prompt. The picture is made by the template itself: the part of its graph upstream of the node that
first takes both an image and a mask (the sampler or the latent crop) runs on the server, so an
outpaint template shows its padded canvas, a background template its inverted mask, a video
template its first frame. A maskless template (the confined instruction edit: its region is found
after the edit) shows its photo untinted. No model runs and no result is shown: random-weight
outputs are not results, and real-weight results cannot be made here.
"""

from __future__ import annotations

from pathlib import Path

from scripts.engine.comfy_engine import is_link, prompt_input

IMAGE_INPUTS = ("image", "images", "pixels")
CARD_WIDTH = 512
TINT = (40, 120, 255)  # blue: visible over the warm example photos


def _upstream(api: dict, ids: list[str]) -> set[str]:
    seen: set[str] = set()
    while ids:
        i = ids.pop()
        if i not in seen:
            seen.add(i)
            ids.extend(v[0] for v in api[i]["inputs"].values() if is_link(v))
    return seen


def first_image_and_mask(api: dict) -> tuple[str, list, list | None]:
    """The node that first receives the photo and the mask together, with those two links; for a
    maskless template, the first LoadImage with no mask link."""
    for node_id in sorted(api, key=int):
        inputs = api[node_id]["inputs"]
        image = next((inputs[k] for k in IMAGE_INPUTS if is_link(inputs.get(k))), None)
        if image is not None and is_link(inputs.get("mask")):
            return node_id, image, inputs["mask"]
    photo = next((k for k in sorted(api, key=int) if api[k]["class_type"] == "LoadImage"), None)
    if photo is None:
        raise SystemExit("no node takes both an image and a mask, and no LoadImage: a template's card needs its photo")
    return photo, [photo, 0], None


def prompt_of(api: dict) -> str:
    """The edit's prompt (``comfy_engine.prompt_input``)."""
    try:
        node, key = prompt_input(api)
    except ValueError as e:
        raise SystemExit(f"{e}: a template's card shows its prompt") from None
    return node["inputs"][key]


def preview_graph(api: dict) -> dict:
    """The template's photo-and-mask stage plus two previews: frame 0 of the image and of the mask
    (none for a maskless template)."""
    _, image, mask = first_image_and_mask(api)
    graph = {k: api[k] for k in _upstream(api, [image[0]] + ([mask[0]] if mask else []))}
    graph.update({
        "card_image": {"class_type": "ImageFromBatch", "inputs": {"image": image, "batch_index": 0, "length": 1}},
        "card_image_out": {"class_type": "PreviewImage", "inputs": {"images": ["card_image", 0]}},
    })
    if mask is None:
        return graph
    graph.update({
        "card_mask_image": {"class_type": "MaskToImage", "inputs": {"mask": mask}},
        "card_mask": {"class_type": "ImageFromBatch", "inputs": {"image": ["card_mask_image", 0], "batch_index": 0,
                                                                  "length": 1}},
        "card_mask_out": {"class_type": "PreviewImage", "inputs": {"images": ["card_mask", 0]}},
    })
    return graph


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def compose(image_path: Path, mask_path: Path | None, prompt: str, dest: Path) -> None:
    """Photo with the edited region tinted and outlined (``mask_path`` None: untinted, the region is
    found after the edit), the prompt in a caption bar below."""
    from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

    with Image.open(image_path) as im:
        photo = im.convert("RGB")
    if mask_path is None:
        mask = Image.new("L", photo.size, 0)
    else:
        with Image.open(mask_path) as mk:
            mask = mk.convert("L").resize(photo.size, Image.NEAREST)
    scale = CARD_WIDTH / photo.width
    size = (CARD_WIDTH, round(photo.height * scale))
    photo, mask = photo.resize(size, Image.LANCZOS), mask.resize(size, Image.NEAREST)
    tinted = Image.blend(photo, Image.new("RGB", size, TINT), 0.5)
    card = Image.composite(tinted, photo, mask.point(lambda v: 255 if v > 127 else 0))
    hard = mask.point(lambda v: 255 if v > 127 else 0)
    edge = ImageChops.subtract(hard.filter(ImageFilter.MaxFilter(5)), hard.filter(ImageFilter.MinFilter(5)))
    card.paste((255, 255, 255), mask=edge)

    font = ImageFont.load_default(22)
    draw = ImageDraw.Draw(card)
    lines = _wrap(draw, f"\"{prompt}\"", font, CARD_WIDTH - 32)[:3]
    bar = 20 + 30 * len(lines)
    out = Image.new("RGB", (CARD_WIDTH, size[1] + bar), (28, 28, 32))
    out.paste(card, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((16, size[1] + 12 + 30 * i), line, font=font, fill=(236, 236, 236))
    out.save(dest, quality=88, optimize=True)


def write_card(server, base: Path, api: dict, dest: Path) -> None:
    """Runs the preview graph on ``server`` (whose base dir is ``base``) and writes the card."""
    entry = server.run(preview_graph(api), timeout=300)

    def saved(node: str) -> Path:
        image = entry["outputs"][node]["images"][0]
        return base / image.get("type", "temp") / image.get("subfolder", "") / image["filename"]

    masked = "card_mask_out" in entry["outputs"]
    compose(saved("card_image_out"), saved("card_mask_out") if masked else None, prompt_of(api), dest)
