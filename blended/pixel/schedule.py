"""The Gaussian noise schedule of OpenAI's ADM models, and its respacing.

The schedule is kept apart from the model and from the sampling loop (as in guided-diffusion) so
that the loop can reuse one UNet output for the guidance gradient *and* the step's mean: every
function here is a pure function of tensors, none of them calls the model.

Tables are float64 (as guided-diffusion keeps them) and are cast to the sample's dtype only after
indexing, so respaced coefficients match the reference implementation to float32 precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError


def linear_betas(num_timesteps: int = 1000) -> torch.Tensor:
    """ADM's linear schedule, rescaled so any step count spans the same noise range as 1000."""
    scale = 1000 / num_timesteps
    return torch.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=torch.float64)


def space_timesteps(num_timesteps: int, spec: str) -> list[int]:
    """Original timesteps kept by a respacing spec: "100", "25,25,50" (per-section counts) or "ddimN".

    Mirrors guided-diffusion's ``space_timesteps`` so published settings ("100", "ddim50") mean
    the same thing here; errors name the spec and what would work.
    """
    spec = str(spec).strip().lower()
    if spec.startswith("ddim"):
        try:
            desired = int(spec[len("ddim"):])
        except ValueError:
            raise InputError(f"steps '{spec}': write 'ddim' followed by a number, e.g. 'ddim50'.") from None
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == desired:
                return list(range(0, num_timesteps, stride))
        raise InputError(
            f"steps '{spec}': {num_timesteps} steps cannot be strided evenly into {desired}; "
            "try ddim25, ddim50, ddim100 or ddim250, or a plain count such as '100'."
        )
    try:
        counts = [int(c) for c in spec.split(",")]
    except ValueError:
        raise InputError(
            f"steps '{spec}': use a step count such as '100', section counts such as '25,25,50', or 'ddim50'."
        ) from None
    if any(c < 1 for c in counts):
        raise InputError(f"steps '{spec}': every section needs at least one step.")
    size_per, extra = divmod(num_timesteps, len(counts))
    start, taken = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise InputError(
                f"steps '{spec}': a section of {size} original steps cannot hold {count} steps; "
                f"use at most {num_timesteps} steps in total."
            )
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        taken += [start + round(stride * k) for k in range(count)]
        start += size
    return sorted(set(taken))


def extract(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """table[t] shaped to broadcast over a [B, ...] tensor, in its dtype and device."""
    out = table.to(t.device)[t].to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class GaussianSchedule:
    """A (possibly respaced) discrete diffusion: betas plus the map to the model's original timesteps."""

    betas: torch.Tensor
    timestep_map: torch.Tensor
    original_num_steps: int

    @classmethod
    def linear(cls, num_timesteps: int = 1000) -> "GaussianSchedule":
        betas = linear_betas(num_timesteps)
        return cls(betas, torch.arange(num_timesteps), num_timesteps)

    def respace(self, spec: str) -> "GaussianSchedule":
        """Keep a subset of steps; betas are recomputed so the kept steps have the same alpha-bar."""
        keep = space_timesteps(self.num_timesteps, spec)
        abar = self.alphas_cumprod
        new_betas, last = [], 1.0
        for i in keep:
            new_betas.append(1 - abar[i].item() / last)
            last = abar[i].item()
        return GaussianSchedule(
            torch.tensor(new_betas, dtype=torch.float64),
            self.timestep_map[torch.tensor(keep)],
            self.original_num_steps,
        )

    # Derived tables (float64, cheap to recompute at these sizes).
    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, 0)

    @property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

    @property
    def posterior_variance(self) -> torch.Tensor:
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_log_variance_clipped(self) -> torch.Tensor:
        # The posterior variance is 0 at t=0; guided-diffusion substitutes the t=1 value.
        var = self.posterior_variance
        return torch.log(torch.cat([var[1:2], var[1:]]))

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The original (0..999) timesteps the UNet was trained on, as floats."""
        scale = 1000.0 / self.original_num_steps
        return self.timestep_map.to(t.device)[t].float() * scale

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise clean images to level t: sqrt(abar) x0 + sqrt(1 - abar) eps."""
        abar = self.alphas_cumprod
        return extract(abar.sqrt(), t, x0) * x0 + extract((1 - abar).sqrt(), t, x0) * noise

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod
        return extract((1 / abar).sqrt(), t, x_t) * x_t - extract((1 / abar - 1).sqrt(), t, x_t) * eps

    def predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod
        return (extract((1 / abar).sqrt(), t, x_t) * x_t - x0) / extract((1 / abar - 1).sqrt(), t, x_t)

    def q_posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar, abar_prev = self.alphas_cumprod, self.alphas_cumprod_prev
        coef1 = self.betas * abar_prev.sqrt() / (1 - abar)
        coef2 = (1 - abar_prev) * (1 - self.betas).sqrt() / (1 - abar)
        return extract(coef1, t, x_t) * x0 + extract(coef2, t, x_t) * x_t

    def p_mean_variance(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False
    ) -> dict[str, torch.Tensor]:
        """p(x_{t-1} | x_t) from an eps + learned-range-sigma output, without calling the model.

        Differentiable in ``x_t`` and ``model_output``; the sampler takes the guidance gradient
        through ``pred_xstart`` and detaches the rest.
        """
        channels = x_t.shape[1]
        if model_output.shape[1] != 2 * channels:
            raise InputError(
                f"diffusion model returned {model_output.shape[1]} channels, expected {2 * channels}: "
                "only learned-sigma ADM checkpoints (learn_sigma=True) are supported."
            )
        eps, var_values = model_output.split(channels, dim=1)
        min_log = extract(self.posterior_log_variance_clipped, t, x_t)
        max_log = extract(torch.log(self.betas), t, x_t)
        frac = (var_values + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        pred_xstart = self.predict_xstart_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        return {
            "mean": self.q_posterior_mean(pred_xstart, x_t, t),
            "variance": log_variance.exp(),
            "log_variance": log_variance,
            "pred_xstart": pred_xstart,
            "eps": eps,
        }
