"""What every node needs from ComfyUI: model folders, devices, progress, interrupts, errors and
text reports.

The library knows nothing about ComfyUI, so this is the one place that translates: ComfyUI's
device policy (``get_torch_device`` to work, ``unet_offload_device`` to rest), its progress bar
with an x̂0 preview, its interrupt flag (checked once per sampling step), the library's
``BlendedError`` into an error ComfyUI shows on the node, while the server keeps serving, and a
node's text report into a UI result that APP mode's output area shows too.
"""

from __future__ import annotations

import contextlib
import logging
import os

import comfy.model_management as mm
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io, ui

from ..blended import memory
from ..blended.clip_model import CLIP_FOLDER
from ..blended.errors import BlendedError, CheckpointError
from .images import preview

# Our own model folders under ComfyUI/models/, registered under names no core loader lists.
# plus one folder per reward model of the ranking (blended.downloads.REWARD_WEIGHTS)
MODEL_FOLDERS = ("blended_diffusion", CLIP_FOLDER, "lpips", "blended_hpsv2", "blended_pickscore", "blended_aesthetic")
# Where the README sent CLIP files before the pack had its own folder: ComfyUI's "clip" key, the
# legacy alias of "text_encoders" (models/clip, models/text_encoders, extra_model_paths' clip:).
LEGACY_CLIP_FOLDER = "clip"


def register_model_folders() -> None:
    """Make models/blended_diffusion, models/blended_clip, models/lpips and the reward models' folders
    known to ComfyUI (and to extra_model_paths.yaml)."""
    for name in MODEL_FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        entry = folder_paths.folder_names_and_paths.get(name)
        if entry is None:
            folder_paths.folder_names_and_paths[name] = ([default], set(folder_paths.supported_pt_extensions))
            continue
        paths, extensions = entry
        if default not in paths:
            paths.append(default)
        if not extensions:  # registered by extra_model_paths.yaml, which lists every file: keep model files only
            folder_paths.folder_names_and_paths[name] = (paths, set(folder_paths.supported_pt_extensions))


def input_directory() -> str:
    """ComfyUI's input/ folder, where Load Image finds the templates' example photos."""
    return folder_paths.get_input_directory()


def model_files(folder: str) -> list[str]:
    try:
        return folder_paths.get_filename_list(folder)
    except KeyError:
        return []


def model_path(folder: str, name: str) -> str | None:
    return folder_paths.get_full_path(folder, name)


def clip_file(name: str, hint: bool = True) -> str | None:
    """Path of a CLIP file in the pack's folder or, for files put there before it existed, in
    models/clip; the latter is used once more with a one-line hint to move it."""
    path = model_path(CLIP_FOLDER, name)
    if path is None:
        try:
            path = model_path(LEGACY_CLIP_FOLDER, name)
        except KeyError:  # a ComfyUI without the legacy folder name
            return None
        if path is not None and hint:
            logging.warning("Blended Diffusion: CLIP file %s is in ComfyUI's text-encoder folder; move it to %s "
                            "(the Blended CLIP Loader lists only that folder).", path, default_folder(CLIP_FOLDER))
    return path


def default_folder(folder: str) -> str:
    """Where a missing file belongs: the first search path of ``folder`` (models/<folder>)."""
    return folder_paths.get_folder_paths(folder)[0]


def require_file(folder: str, name: str, what: str, instead: str) -> str:
    """Full path of ``name`` in model folder ``folder``, or an error saying where it belongs."""
    path = model_path(folder, name)
    if path is None:
        raise CheckpointError(f"{what} '{name}' is not in {default_folder(folder)}. Put it there, or {instead}.")
    return path


@contextlib.contextmanager
def user_errors():
    """Show a library error as the node's error message, in the library's words."""
    try:
        yield
    except BlendedError as e:
        raise ValueError(str(e)) from e


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt if the user pressed Cancel; called between phases that take seconds."""
    mm.throw_exception_if_processing_interrupted()


def work_device() -> torch.device:
    return mm.get_torch_device()


def offload_device() -> torch.device:
    return mm.unet_offload_device()


def make_room(model, guidance, settings, samples: int, device: torch.device) -> None:
    """Ask ComfyUI to unload its own models so ours, and the working memory of the whole batch at
    the model's resolution, fit on the GPU. Where that is not possible, the sampler's planner
    splits the batch into chunks that fit what is left."""
    if device.type == "cpu":
        return
    modules = [model] + ([guidance.clip.clip.model] if guidance.clip is not None else [])
    size = model.image_size
    work = memory.estimate(model, guidance, size, size, settings.autocast, checkpointing=settings.memory == "low")
    make_room_for(modules, device, extra_bytes=work.chunk(samples))


def make_room_for(modules, device: torch.device, extra_bytes: int = 0) -> None:
    """Ask ComfyUI to unload its own models so ``modules`` (their size) and ``extra_bytes`` fit."""
    if device.type == "cpu":
        return
    mm.free_memory(sum(mm.module_size(m) for m in modules if isinstance(m, torch.nn.Module)) + extra_bytes, device)


def normal_tensors():
    """Nodes run under ``torch.inference_mode()``, and a weight created there (loaded, or copied to
    another device) can never take part in autograd again: the sampler's guidance gradient would
    fail with "Inference tensors cannot be saved for backward". Model loading and moving happen
    inside this block."""
    return torch.inference_mode(False)


def _move(movable, device) -> None:
    with normal_tensors():
        for m in movable:
            if m is not None:
                m.to(device)


@contextlib.contextmanager
def models_on(device: torch.device, *movable):
    """Move models (anything with ``.to``) to ``device`` for the block, then back to the offload device."""
    try:
        _move(movable, device)
        yield device
    finally:
        _move(movable, offload_device())
        mm.soft_empty_cache()


class StepProgress:
    """Drives ComfyUI's progress bar over several sampling runs and checks for Cancel every step.

    Each image is one ``sample`` call whose steps span all its chunks; the call reports its own
    total, which grows when an out-of-memory error splits a chunk, so the bar's total is
    re-estimated as the finished calls plus the current call's total for each image left.
    """

    def __init__(self, total_steps: int, images: int = 1, preview_size: int = 512):
        self.total = max(1, int(total_steps))
        self.images = max(1, int(images))
        self.finished = 0  # steps of completed sample calls
        self.calls = 0  # completed sample calls
        self.last = None  # (step, steps) of the current call
        self.bar = comfy.utils.ProgressBar(self.total)
        self.preview_size = preview_size

    def callback(self, step: int, steps: int, pred_x0: torch.Tensor) -> None:
        check_interrupt()
        if step == 0 and self.last is not None and self.last[0] == self.last[1] - 1:
            self.finished += self.last[1]  # the previous call ended: this is the next image
            self.calls += 1
        self.last = (step, steps)
        self.total = self.finished + steps * max(1, self.images - self.calls)
        value = min(self.finished + step + 1, self.total)
        self.bar.update_absolute(value, self.total, ("JPEG", preview(pred_x0), self.preview_size))


class DownloadProgress:
    """A download on the node's progress bar (in MB), with Cancel checked at every chunk: a
    cancelled download keeps its partial file and the next run resumes it."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int | None) -> None:
        check_interrupt()
        if total:
            steps = max(1, total >> 20)
            if self.bar is None:
                self.bar = comfy.utils.ProgressBar(steps)
            self.bar.update_absolute(min(done >> 20, steps), steps)


class ChunkProgress:
    """Chunks of a longer job (the reward models of the ranking) on the node's progress bar."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(max(1, total))
        self.bar.update_absolute(done, max(1, total))


def text_report(text: str, name: str) -> dict:
    """A node's UI result for its text report. ``text`` is the preview exactly as ``ui.PreviewText``
    gives it (as before: the run's history and API clients read it there); ``files`` lists the same
    text as a .txt file, the way core SaveText lists its file, because APP mode's output area
    (frontends 1.48.7 and 1.58.1) skips the ``text`` key and shows only files: it fetches a .txt
    through /view and shows its text."""
    return {**ui.PreviewText(text).as_dict(), "files": [save_temp_text(text, name)]}


def save_temp_text(text: str, name: str) -> ui.SavedResult:
    """Write ``text`` (UTF-8, line ends as they are) to a new ``<name>_<counter>_.txt`` in ComfyUI's
    temp folder: a preview, like PreviewImage's files, which the server clears at start. The counter
    comes from ComfyUI's own ``get_save_image_path``; the file is created exclusively, so a run that
    finds its name taken by another writing at the same time (two servers sharing the folder) takes
    the next counter instead of overwriting it."""
    folder, base, counter, subfolder, _ = folder_paths.get_save_image_path(name, folder_paths.get_temp_directory())
    while True:
        file = f"{base}_{counter:05}_.txt"
        try:
            with open(os.path.join(folder, file), "x", encoding="utf-8", newline="") as f:
                f.write(text)
        except FileExistsError:
            counter += 1
            continue
        return ui.SavedResult(file, subfolder, io.FolderType.temp)
