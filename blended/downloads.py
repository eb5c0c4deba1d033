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
from typing import Callable

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

# OpenAI's CLIP ViT-B/16, the weights behind the CLIP loader's default hub tag. OpenAI's clip package
# names each file by its SHA-256 and checks it; this is the same blob in the storage account that
# openaipublic.azureedge.net served (the diffusion models above come from it directly). Its size is
# not published next to it, so only the hash is checked.
CLIP_VIT_B16 = WeightFile(
    filename="ViT-B-16.pt",
    subfolder="blended_clip",
    url="https://openaipublic.blob.core.windows.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    description="OpenAI CLIP ViT-B/16 (the guidance model of Blended Diffusion)",
    sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
)


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


# Called as (bytes so far, total or None) while a file downloads; it may raise to stop (Cancel):
# the partial file is kept and the next call resumes it.
ProgressFn = Callable[[int, "int | None"], None]


def ensure_file(entry: WeightFile, folder, allow_download: bool = True, progress: ProgressFn | None = None) -> Path:
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
        _download(entry, path, progress)
    except CheckpointError as e:
        raise CheckpointError(f"{missing_message(entry, folder)} {e}") from None
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        part = partial_path(path)
        kept = (f" The {part.stat().st_size / 1e6:.1f} MB received so far are kept in '{part}'; the next "
                "try resumes from there.") if part.is_file() and part.stat().st_size else ""
        raise CheckpointError(
            f"{missing_message(entry, folder)} The automatic download failed: {e}.{kept}"
        ) from None
    return path


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _hash_file(path: Path, digest) -> int:
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size


class _Reporter:
    """Progress to the caller's callback at every chunk, and to the console every 2 s."""

    def __init__(self, entry: WeightFile, progress: ProgressFn | None):
        self.entry, self.progress, self.last = entry, progress, 0.0

    def __call__(self, done: int, total: int | None, force: bool = False) -> None:
        if self.progress is not None:
            self.progress(done, total)
        if force or time.monotonic() - self.last > 2:
            self.last = time.monotonic()
            pct = f" {100 * done / total:5.1f}%" if total else ""
            print(f"  {self.entry.filename}: {done / 1e6:8.1f} MB{pct}", file=sys.stderr, flush=True)


def _download(entry: WeightFile, path: Path, progress: ProgressFn | None = None):
    """Stream to ``<name>.part`` and rename only once complete and verified (size and SHA-256
    where published), so a file under the real name is always whole. An interrupted download
    (network, Cancel) keeps its ``.part``; the next call asks the server for the rest with an HTTP
    Range request and hashes the part already on disk, so a resumed file is verified as a whole.
    A part that fails verification is deleted: it cannot be trusted to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(path)
    digest = hashlib.sha256()
    done = _hash_file(part, digest) if part.is_file() else 0
    report = _Reporter(entry, progress)
    if entry.size is not None and done > entry.size:
        part.unlink()
        digest, done = hashlib.sha256(), 0
    if entry.size is None or done < entry.size:
        request = urllib.request.Request(entry.url, headers={"Range": f"bytes={done}-"} if done else {})
        print(f"Downloading {entry.url} -> {path}" + (f" (resuming at {done / 1e6:.1f} MB)" if done else ""),
              file=sys.stderr, flush=True)
        with urllib.request.urlopen(request, timeout=60) as response:
            if done and getattr(response, "status", None) != 206:  # the server sent the whole file again
                print(f"  {entry.filename}: the server cannot resume; starting over", file=sys.stderr, flush=True)
                digest, done = hashlib.sha256(), 0
            length = int(response.headers.get("Content-Length") or 0)
            total = done + length if length else entry.size
            report(done, total, force=True)
            with open(part, "ab" if done else "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    report(done, total)
    if entry.size is not None and done != entry.size:
        raise CheckpointError(f"The download ended after {done} bytes instead of {entry.size}; try again.")
    if entry.sha256 is not None and digest.hexdigest() != entry.sha256:
        part.unlink()
        raise CheckpointError(
            f"The downloaded file's SHA-256 is {digest.hexdigest()}, not the published "
            f"{entry.sha256}; the download is corrupt and was deleted. Try again."
        )
    os.replace(part, path)
    print(f"  {entry.filename}: done ({done / 1e6:.1f} MB, verified)" if entry.sha256 else
          f"  {entry.filename}: done ({done / 1e6:.1f} MB)", file=sys.stderr, flush=True)


# Reward models for ranking (blended.reward_models). Neither the authors' pages nor their code
# publish a SHA-256 or size for these three files (Hugging Face shows an LFS hash only on its web
# page, which could not be read here), so they download unverified, like ADM_512_COND above; pin
# one by filling in ``sha256`` (Hugging Face's "SHA256" on the file's page) and the downloader
# checks it. OpenAI's ViT-L/14 is named by its SHA-256, which OpenAI's clip package checks.
HPS_V21 = WeightFile(
    filename="HPS_v2.1_compressed.pt",
    subfolder="blended_hpsv2",
    url="https://huggingface.co/xswu/HPSv2/resolve/main/HPS_v2.1_compressed.pt",
    description="HPSv2.1 human preference score (open_clip ViT-H-14)",
)
PICKSCORE_V1 = WeightFile(
    filename="PickScore_v1.safetensors",
    subfolder="blended_pickscore",
    url="https://huggingface.co/yuvalkirstain/PickScore_v1/resolve/main/model.safetensors",
    description="PickScore v1 (CLIP-H in transformers layout); saved under this name",
)
AESTHETIC_V2 = WeightFile(
    filename="sac+logos+ava1-l14-linearMSE.pth",
    subfolder="blended_aesthetic",
    url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth",
    description="LAION aesthetic predictor v2 (MLP over CLIP ViT-L/14 image embeddings)",
)
CLIP_VIT_L14 = WeightFile(
    filename="ViT-L-14.pt",
    subfolder="blended_clip",
    url="https://openaipublic.blob.core.windows.net/clip/models/"
    "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    description="OpenAI CLIP ViT-L/14 (the aesthetic predictor's image encoder)",
    sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
)
REWARD_WEIGHTS = {"hpsv2": (HPS_V21,), "pickscore": (PICKSCORE_V1,), "aesthetic": (AESTHETIC_V2, CLIP_VIT_L14)}
