"""Schedule and single-step parity with OpenAI's guided-diffusion (test-only dependency)."""

import numpy as np
import pytest
import torch
from guided_diffusion.script_util import create_gaussian_diffusion

from blended.errors import InputError
from blended.pixel.sampler import ddim_step, ddpm_step
from blended.pixel.schedule import GaussianSchedule, space_timesteps

SPECS = ["100", "ddim50", "25,25,50", "1000", "7"]


def reference(spec):
    return create_gaussian_diffusion(
        steps=1000, learn_sigma=True, noise_schedule="linear", timestep_respacing=spec, rescale_timesteps=True
    )


@pytest.mark.parametrize("spec", SPECS)
def test_tables_match_reference(spec):
    ref, ours = reference(spec), GaussianSchedule.linear(1000).respace(spec)
    assert ours.timestep_map.tolist() == ref.timestep_map
    names = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance", "posterior_log_variance_clipped"]
    for name in names:
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(ref, name), rtol=1e-12, atol=0, err_msg=name)


def test_respacing_errors_name_the_spec():
    with pytest.raises(InputError, match="ddim999"):
        space_timesteps(1000, "ddim999")
    with pytest.raises(InputError, match="'abc'"):
        space_timesteps(1000, "abc")
    with pytest.raises(InputError, match="cannot hold"):
        space_timesteps(1000, "600,600")


class FixedOutput(torch.nn.Module):
    """Stands in for the UNet: returns a fixed output and records the timesteps it was fed."""

    def __init__(self, out):
        super().__init__()
        self.out, self.seen = out, []

    def forward(self, x, t, **kw):
        self.seen.append(t.clone())
        return self.out


def _setup(spec="100", batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 8, 8, generator=g)
    out = torch.cat([torch.randn(batch, 3, 8, 8, generator=g), torch.rand(batch, 3, 8, 8, generator=g) * 2 - 1], 1)
    t = torch.tensor([99, 40, 0][:batch]) if spec == "100" else torch.tensor([49, 10, 0][:batch])
    grad = torch.randn(batch, 3, 8, 8, generator=g) * 0.1
    return x, out, t, grad


@pytest.mark.parametrize("spec", ["100", "ddim50"])
def test_p_mean_variance_and_model_timesteps_match(spec):
    x, out, t, _ = _setup(spec)
    ref, ours = reference(spec), GaussianSchedule.linear(1000).respace(spec)
    model = FixedOutput(out)
    r = ref.p_mean_variance(model, x, t, clip_denoised=False)
    p = ours.p_mean_variance(out, x, t)
    for key in ["mean", "variance", "log_variance", "pred_xstart"]:
        torch.testing.assert_close(p[key], r[key], rtol=1e-5, atol=1e-5, msg=key)
    torch.testing.assert_close(ours.model_timesteps(t), model.seen[0].float())
    torch.testing.assert_close(ours.q_sample(x, t, out[:, :3]), ref.q_sample(x, t, out[:, :3]), rtol=1e-6, atol=1e-6)


def test_guided_ddpm_step_matches_reference_p_sample():
    x, out, t, grad = _setup("100")
    ref, ours = reference("100"), GaussianSchedule.linear(1000).respace("100")
    torch.manual_seed(123)
    # Reference cond_fn returns grad log p(y|x) = -grad(loss); ours takes grad(loss).
    expected = ref.p_sample(FixedOutput(out), x, t, clip_denoised=False, cond_fn=lambda x, t: -grad,
                            model_kwargs={})["sample"]
    torch.manual_seed(123)
    noise = torch.randn_like(x)
    got = ddpm_step(ours.p_mean_variance(out, x, t), t, grad, noise)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, ddpm_step(ours.p_mean_variance(out, x, t), t, torch.zeros_like(grad), noise))


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_guided_ddim_step_matches_reference(eta):
    x, out, t, grad = _setup("ddim50")
    ref, ours = reference("ddim50"), GaussianSchedule.linear(1000).respace("ddim50")
    torch.manual_seed(7)
    expected = ref.ddim_sample(FixedOutput(out), x, t, clip_denoised=False, cond_fn=lambda x, t: -grad, eta=eta,
                               model_kwargs={})
    torch.manual_seed(7)
    noise = torch.randn_like(x)
    got = ddim_step(ours, ours.p_mean_variance(out, x, t), x, t, grad, noise, eta)
    torch.testing.assert_close(got, expected["sample"], rtol=1e-5, atol=1e-5)
