"""The ranking-cost benchmark's mechanics on tiny models (``--tiny``): every phase runs through the
pack's own loaders and scoring, the report has its rows and last line, nothing is left on disk. The
figures are benchmarks/RESULTS.md's business, never this test's."""

from __future__ import annotations

import math
import re

import pytest

from tests.support.sd15_fixture import comfy_engine_path

try:
    comfy_engine_path()
except SystemExit as missing:  # no ComfyUI here: the ComfyUI-free tests still run (setup: scripts/setup/setup_comfy.sh)
    pytest.skip(str(missing), allow_module_level=True)

import blended.clip_model  # noqa: E402
import blended.reward_models  # noqa: E402
from benchmarks import bench_rank_cost as bench  # noqa: E402
from blended.downloads import REWARD_WEIGHTS  # noqa: E402

LAST = re.compile(r"rank_cost: sample_s=(\S+) clip=(\S+) hpsv2=(\S+) pickscore=(\S+) aesthetic=(\S+)$")


def test_tiny_run_loads_every_model_through_the_packs_loaders_and_reports_each_criterion(tmp_path, monkeypatch):
    loaded = []
    load_reward, load_clip = blended.reward_models.load_reward, blended.clip_model.load_clip

    def spy_reward(kind, *paths, **kw):
        loaded.append((kind, [p.name for p in paths]))
        return load_reward(kind, *paths, **kw)

    def spy_clip(path, **kw):
        loaded.append(("clip", [path.name]))
        return load_clip(path, **kw)

    monkeypatch.setattr(blended.reward_models, "load_reward", spy_reward)
    monkeypatch.setattr(blended.clip_model, "load_clip", spy_clip)
    lines = bench.run(2, 64, 3, 1, min_free_gb=0, wait_s=0, tiny=True, folder=tmp_path)

    # each model from a file under the name a user's models/ folder has it
    assert loaded == [("clip", ["ViT-B-16.pt"])] + [
        (kind, [entry.filename for entry in REWARD_WEIGHTS[kind]]) for kind in bench.REWARDS]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:7]}
    assert set(rows) == {"clip", *bench.REWARDS}
    for values in rows.values():
        assert all(math.isfinite(float(v)) and float(v) >= 0 for v in values)
    match = LAST.match(lines[-1])
    assert match and all(float(v) > 0 for v in match.groups()), lines[-1]
    assert "1 of 3 steps took" in lines[1] and "UNet calls, batch 2" in lines[1]  # cond + uncond, as KSampler
    assert not list(tmp_path.iterdir()), "the model files and their folder are removed"


def test_the_wait_for_memory_gives_up_with_the_figures():
    with pytest.raises(SystemExit, match=r"only .* GB available after 0 s; need 100000 GB"):
        bench.wait_for_memory(100000, wait_s=0, poll_s=0)


def test_bad_arguments_are_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--run-steps", "5", "--steps", "3"])
    assert "--run-steps 5: use 1 to --steps (3)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--size", "60"])
    assert "--size 60: use a multiple of 8" in capsys.readouterr().err
