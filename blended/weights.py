"""The pretrained files the pack knows how to fetch, and fetching them.

A missing file is downloaded once when the machine is online; offline (or when downloads are
switched off) the error says exactly which file goes in which folder and where to get it, since
that is all a user needs to fix it by hand.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError


@dataclass(frozen=True)
class WeightFile:
    filename: str
    subfolder: str  # under ComfyUI's models/ folder
    url: str
    description: str
    size: int | None = None  # bytes; None where no trustworthy published value was found
    sha256: str | None = None


# Size and SHA-256 as recorded independently by several projects that verify this download
# (Disco Diffusion's model table, reproduction manifests): 2,211,383,297 bytes.
ADM_256_UNCOND = WeightFile(
    filename="256x256_diffusion_uncond.pt",
    subfolder="blended_diffusion",
    url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
    description="OpenAI guided-diffusion unconditional ImageNet 256x256 model (the one Blended Diffusion uses)",
    size=2_211_383_297,
    sha256="a37c32fffd316cd494cf3f35b339936debdc1576dad13fe57c42399a5dbc78b1",
)

# Class-conditional; used with the zero class vector. No verified size/hash was found for it.
ADM_512_COND = WeightFile(
    filename="512x512_diffusion.pt",
    subfolder="blended_diffusion",
    url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/512x512_diffusion.pt",
    description="OpenAI guided-diffusion class-conditional ImageNet 512x512 model",
)

KNOWN_WEIGHTS = {w.filename: w for w in (ADM_256_UNCOND, ADM_512_COND)}


def downloads_disabled() -> bool:
    """HF_HUB_OFFLINE=1 (the ecosystem's switch) or BLENDED_OFFLINE=1 mean: never touch the network."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "BLENDED_OFFLINE"))


def _size_text(size: int | None) -> str:
    return f" (about {size / 1e9:.1f} GB)" if size else ""


def missing_message(entry: WeightFile, folder) -> str:
    return (
        f"The model file '{entry.filename}' is missing from '{folder}'. Download it from "
        f"{entry.url}{_size_text(entry.size)} and put it in that folder "
        f"(ComfyUI/models/{entry.subfolder}/)."
    )


def ensure_file(entry: WeightFile, folder, allow_download: bool = True) -> Path:
    """Path of ``entry`` inside ``folder``, downloading it first if it is missing and allowed."""
    folder = Path(folder)
    path = folder / entry.filename
    if path.is_file():
        return path
    if not allow_download:
        raise CheckpointError(missing_message(entry, folder))
    if downloads_disabled():
        raise CheckpointError(
            missing_message(entry, folder) + " Automatic download is off (HF_HUB_OFFLINE or "
            "BLENDED_OFFLINE is set)."
        )
    try:
        _download(entry, path)
    except CheckpointError as e:
        raise CheckpointError(f"{missing_message(entry, folder)} {e}") from None
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        raise CheckpointError(
            f"{missing_message(entry, folder)} The automatic download failed: {e}."
        ) from None
    return path


def _download(entry: WeightFile, path: Path):
    """Stream to ``<name>.part`` and rename only once complete and verified, so an interrupted
    download never leaves a file that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    done, last_report = 0, 0.0
    print(f"Downloading {entry.url} -> {path}", file=sys.stderr)
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or entry.size
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if time.monotonic() - last_report > 2:
                    last_report = time.monotonic()
                    pct = f" {100 * done / total:5.1f}%" if total else ""
                    print(f"  {entry.filename}: {done / 1e6:8.1f} MB{pct}", file=sys.stderr)
        if entry.size is not None and done != entry.size:
            raise CheckpointError(
                f"The download ended after {done} bytes instead of {entry.size}; try again."
            )
        if entry.sha256 is not None and digest.hexdigest() != entry.sha256:
            raise CheckpointError(
                f"The downloaded file's SHA-256 is {digest.hexdigest()}, not the published "
                f"{entry.sha256}; the download is corrupt. Try again."
            )
        os.replace(part, path)
    finally:
        if part.exists():
            part.unlink()
    print(f"  {entry.filename}: done ({done / 1e6:.1f} MB)", file=sys.stderr)
