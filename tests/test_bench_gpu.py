"""`unsee bench gpu` runs every stage on the CPU with the tiny pipeline: the code paths the
GPU run takes, with their figures and the report written after each stage."""

import json

import pytest

from unsee.bench.config import BenchGpuConfig
from unsee.bench.gpu import run_bench_gpu


@pytest.mark.slow
def test_bench_gpu_stages_on_the_cpu(tmp_path, monkeypatch):
    import unsee.erase.run as erase_run

    monkeypatch.setattr(erase_run, "READ_EVERY", 2)  # the losses read after 2 steps, not 25
    cfg = BenchGpuConfig(
        out=tmp_path / "out", device="cpu", size="tiny", images=2, batch_size=2, steps=2,
        plain_trajectories=1, sdd_steps=3, sdd_steps_reuse1=1, sample_steps=3, erase_budget=0,
        censor_images=1, censor_steps=2, invert_steps=1, attack_prompts=1, work=tmp_path,
        sdd_autocast=True,
        stages=["generate", "sdd", "erase", "censor", "invert", "attack"],
    )  # fmt: skip
    report = run_bench_gpu(cfg)
    assert report["errors"] == {}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    f = saved["figures"]
    for key in ("generate_vs_diffusers", "sdd_unsee_default_vs_plain", "sdd_unsee_reuse64_vs_plain",
                "sdd_unsee_reuse16_vs_plain", "sdd_unsee_reuse1_vs_plain",
                "censor_guided_times_plain",
                "censor_guided_noise_aware_times_plain", "invert_steps_per_s",
                "erase_default_projected_loop_seconds", "attack_seconds_per_prompt"):  # fmt: skip
        assert f[key] > 0, key
    stages = saved["stages"]
    assert stages["sdd"]["unsee_default"]["reuse"] == 32  # erase's default beyond minisd
    assert stages["sdd"]["unsee_reuse16"]["reuse"] == 16
    assert stages["sdd"]["unsee_reuse1"]["reuse"] == 1
    assert stages["sdd"]["unsee_autocast"]["mixed"] == "autocast"
    # the losses are read every 2 steps and at the end: the steady rate is from those
    assert [s for s, _ in stages["sdd"]["unsee_default"]["timeline"]] == [2, 3]
    assert stages["sdd"]["unsee_default"]["its_steady"] > 0
    assert f["sdd_unsee_default_steady_vs_plain"] > 0
    assert stages["erase"]["ran"] is False  # the budget of 0 s keeps the whole erase out
    assert stages["generate"]["unsee_default"]["images"] == 4  # one warm-up batch more
    assert "## censor" in (tmp_path / "out" / "results.md").read_text()
    assert not list(tmp_path.glob("unsee-bench-gpu-*"))  # the temporary folder is gone


@pytest.mark.slow
def test_a_failing_stage_is_recorded_and_the_next_runs(tmp_path, monkeypatch):
    import unsee.bench.gpu as gpu

    def broken(*args):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(gpu, "_stage_invert", broken)
    cfg = BenchGpuConfig(out=tmp_path / "out", device="cpu", size="tiny", work=tmp_path,
                         stages=["invert", "attack"])  # fmt: skip
    report = run_bench_gpu(cfg)
    assert "out of memory, say" in report["errors"]["invert"]
    assert "attack" in report["stages"] and "attack" not in report["errors"]


def test_the_whole_erase_runs_at_the_first_reuse_projected_within_budget(tmp_path, monkeypatch):
    import unsee.bench.gpu as gpu

    ran = []
    monkeypatch.setattr(gpu, "_erase", lambda cfg, folder, out, steps, reuse: ran.append(reuse)
                        or {"loop_seconds": 1.0})  # fmt: skip
    # 1500 steps x 4 samples: 20/s projects 300 s (too long), 40/s 150 s (fits 200)
    sdd = {
        "unsee_default": {"reuse": 32, "mixed": "pure", "its": 10.0, "its_steady": 20.0},
        "unsee_autocast": {"reuse": 32, "mixed": "autocast", "its": 99.0},
        "unsee_reuse64": {"reuse": 64, "mixed": "pure", "its": 30.0, "its_steady": 40.0},
    }
    cfg = BenchGpuConfig(out=tmp_path, device="cpu", erase_budget=200, erase_reuse=[32, 64])
    out = gpu._stage_erase(cfg, tmp_path / "folder", tmp_path, {"stages": {"sdd": sdd}})
    assert ran == [64] and out["ran"] is True
    assert out["projected_loop_seconds"] == {32: 300.0, 64: 150.0}
    ran.clear()
    cfg = BenchGpuConfig(out=tmp_path, device="cpu", erase_budget=100, erase_reuse=[32, 64])
    out = gpu._stage_erase(cfg, tmp_path / "folder", tmp_path, {"stages": {"sdd": sdd}})
    assert ran == [] and out["ran"] is False


@pytest.mark.slow
def test_bench_gpu_sdxl_stages_on_the_cpu(tmp_path):
    """--size tiny-sdxl: the SDXL path of the bench (--size sdxl on a GPU) on a tiny SDXL,
    its default stages: generate against diffusers' SDXL pipeline, censor, invert, one
    `unsee erase` and the projection of the whole default erase."""
    cfg = BenchGpuConfig(
        out=tmp_path / "out", device="cpu", size="tiny-sdxl", images=2, batch_size=2, steps=2,
        sdd_steps=26, sample_steps=3, erase_budget=0, censor_images=1, censor_steps=2,
        censor_variants=["guided"], invert_steps=1, work=tmp_path,
    )  # fmt: skip
    assert cfg.stages == ["generate", "censor", "invert", "sdd", "erase"] and cfg.sdd_reuse == []
    report = run_bench_gpu(cfg)
    assert report["errors"] == {}
    f = report["figures"]
    for key in ("generate_vs_diffusers", "censor_guided_times_plain", "invert_steps_per_s",
                "sdd_unsee_default_its", "erase_default_projected_loop_seconds"):  # fmt: skip
        assert f[key] > 0, key
    stages = report["stages"]
    assert "plain_loop" not in stages["sdd"] and stages["sdd"]["unsee_default"]["reuse"] == 32
    assert "tiny SDXL" in report["settings"]["model"]


def test_sdxl_size_is_sdxl_base_at_1024():
    """The --size sdxl pipeline's shapes (built on the meta device: no memory)."""
    import torch

    from unsee.bench.gpu import SIZES

    build, size, line = SIZES["sdxl"]
    with torch.device("meta"):
        pipe = build(seed=0)
    assert size == 1024 == pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert pipe.unet.config.cross_attention_dim == 2048
    unet = sum(p.numel() for p in pipe.unet.parameters())
    assert 2.5e9 < unet < 2.7e9 and "1024x1024" in line
