"""The shipped example photos, put where the templates' Load Image nodes look for them.

A template names ``blended_object.png`` and friends; ComfyUI resolves those in its ``input/``
folder, so a user who opens a template can press Queue at once. A file is copied only while no file
of that name is there: a user's own ``blended_object.png`` is never replaced, not even by a server
starting at the same moment (the copy is linked into place, which fails if the name exists). Plain
torch-free Python, so it is tested without the engine.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "workflows" / "examples"
EXAMPLE_SUFFIXES = (".png", ".mp4")  # photos and masks, and the video template's clip


def install_example_inputs(input_dir: str | os.PathLike, source: Path = EXAMPLES) -> list[str]:
    """Copy each example image (and video) into ``input_dir`` unless that name exists; returns the names copied.
    An input folder that cannot be written is reported once and skipped: the nodes still load."""
    input_dir = Path(input_dir)
    copied = []
    for src in sorted(p for p in source.iterdir() if p.suffix in EXAMPLE_SUFFIXES):
        dest = input_dir / src.name
        if dest.exists():
            continue
        try:
            input_dir.mkdir(parents=True, exist_ok=True)
            if _place(src, dest):
                copied.append(src.name)
        except OSError as e:
            logging.warning("Blended Diffusion: could not copy the example %s to %s (%s); copy it by hand "
                            "to run the templates as shipped.", src.name, input_dir, e)
            break
    if copied:
        logging.info("Blended Diffusion: example inputs for the templates copied to %s: %s", input_dir,
                     ", ".join(copied))
    return copied


def _place(src: Path, dest: Path) -> bool:
    """Copy ``src`` to a temporary file beside ``dest`` and link it in under ``dest``'s name, so a
    half-written file never carries the name and an existing one is never overwritten."""
    fd, tmp = tempfile.mkstemp(prefix=".blended-", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: exclusive create instead
            try:
                with open(dest, "xb") as out, open(tmp, "rb") as f:
                    shutil.copyfileobj(f, out)
            except FileExistsError:
                return False
        return True
    finally:
        os.unlink(tmp)
