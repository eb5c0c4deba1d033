"""Model files that try to run code when loaded, for the loaders' refusal tests.

Each writes a marker file if its code ever runs; the tests check the marker is never created by
our loaders, and that it *is* created by the unsafe loader the file targets, so the test would
catch a loader that runs it.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import torch


class _RunsCode:
    """Pickles as a call of ``os.system``: what a poisoned .pt/.ckpt does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def pickle_that_runs_code(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A checkpoint whose state dict hides a call of os.system among real tensors."""
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(marker)}, str(path),
               _use_new_zipfile_serialization=not legacy)
    return path


def torchscript_that_runs_code(path: Path, marker: Path) -> Path:
    """A TorchScript archive whose scripted ``__setstate__`` creates ``marker`` through
    ``torch.from_file(..., shared=True)`` when ``torch.jit.load`` rebuilds it, as in the report."""
    source = textwrap.dedent(f'''
        import torch
        from typing import Tuple

        class Payload(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = torch.nn.Parameter(torch.zeros(2))

            def forward(self, x):
                return x + self.proj

            @torch.jit.export
            def __getstate__(self) -> Tuple[torch.Tensor, bool]:
                return (self.proj, self.training)

            @torch.jit.export
            def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
                self.proj = state[0] + torch.from_file({str(marker)!r}, shared=True, size=8)[:2] * 0
                self.training = state[1]
    ''')
    module_path = path.with_suffix(".payload.py")
    module_path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"payload_{abs(hash(str(path)))}", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.jit.script(module.Payload()).save(str(path))
    module_path.unlink()
    return path
