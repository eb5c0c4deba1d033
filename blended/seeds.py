"""Seeds per sample: sample i of a batch uses seed + i, and draws everything random from its own
CPU generator, so a sample can be reproduced alone, in any batch size and on any device."""

from __future__ import annotations

import torch


def batch_seeds(seed: int, count: int) -> list[int]:
    return [int(seed) + i for i in range(int(count))]


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator for ``seed``; seeds beyond torch's signed 64-bit range wrap around."""
    return torch.Generator().manual_seed(int(seed) % 2**63)
