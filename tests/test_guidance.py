import json

import numpy as np
import pytest
import torch
from conftest import pixels, read_metadata
from diffusers import DDIMScheduler, StableDiffusionPipeline
from torch import nn

from unsee.censor.config import CensorConfig, generate_config
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.guidance.hook import Censor
from unsee.guidance.pipelines import CensoredDDPMPipeline, CensoredStableDiffusionPipeline
from unsee.guidance.reward_guidance import (
    Guidance,
    backward_refine,
    eps_from_x0,
    forward_shift,
    guided_denoiser,
    scale_at,
    x0_from_eps,
)
from unsee.reward.model import RewardModel
from unsee.sampling.denoiser import exact_cpu_kernels
from unsee.sampling.loop import renoise


class RedReward(nn.Module):
    """A hand-made reward: benign = little red (sign=+1) or much red (sign=-1)."""

    def __init__(self, sign: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(-8.0 * sign))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x[:, 0] - x[:, 1:].mean(1)).mean((1, 2))


def red_reward(sign: float = 1.0) -> RewardModel:
    return RewardModel({"backbone": "cnn", "ensemble": 1}, [RedReward(sign)]).eval()


def redness(images: np.ndarray) -> float:
    x = images.astype(float)
    return float((x[..., 0] - x[..., 1:].mean(-1)).mean())


def test_x0_and_eps_are_inverse_and_renoise_keeps_the_variance():
    g = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    abar = torch.tensor(0.3)
    x0 = x0_from_eps(x_t, eps, abar)
    torch.testing.assert_close(eps_from_x0(x_t, x0, abar), eps)
    # unit-variance x_{t-1} stays unit variance when taken back to t
    x_prev = torch.randn(20000, generator=g)
    x = renoise(x_prev, torch.tensor(0.4), torch.tensor(0.6), torch.randn(20000, generator=g))
    assert abs(float(x.var()) - 1) < 0.05


def test_forward_guidance_matches_the_hand_computed_gradient():
    """eps(x) = 0.5 x, log p = -|x0|^2: x0 = c x with c = (1 - 0.5 s) / sqrt(a), so
    grad_x log p = -2 c^2 x (through the denoiser), and -2 c x / sqrt(a) without it."""
    a = torch.tensor(0.64)
    s = (1 - a).sqrt()
    c = (1 - 0.5 * s) / a.sqrt()
    x = torch.randn(2, 4, 3, 3)

    def denoiser(x, t):
        return 0.5 * x

    def log_prob(x0):
        return -(x0**2).flatten(1).sum(1)

    shifted, eps = forward_shift(x, torch.tensor(10), denoiser, a, log_prob, w=2.0)
    torch.testing.assert_close(eps, 0.5 * x)
    torch.testing.assert_close(shifted, 0.5 * x - s * 2.0 * (-2 * c**2 * x))
    cheap, _ = forward_shift(x, torch.tensor(10), denoiser, a, log_prob, 2.0, through_unet=False)
    torch.testing.assert_close(cheap, 0.5 * x - s * 2.0 * (-2 * c * x / a.sqrt()))


def test_backward_guidance_raises_the_reward_within_the_clamp():
    x0 = torch.zeros(3, 3, 8, 8)
    reward = red_reward()
    refined = backward_refine(x0, reward.log_prob, steps=20, lr=0.1, clamp=(-1.0, 1.0))
    assert (reward.log_prob(refined) > reward.log_prob(x0)).all()
    assert refined.min() >= -1 and refined.max() <= 1
    assert (refined[:, 0] < 0).all() and (refined[:, 1:] > 0).all()


def test_window_and_schedule():
    g = Guidance(scale=2.0, window=(0.2, 0.6), schedule="linear")
    assert scale_at(g, 100, 1000) == 0.0 and scale_at(g, 700, 1000) == 0.0
    assert scale_at(g, 500, 1000) == pytest.approx(1.0)
    assert scale_at(Guidance(scale=2.0, schedule="late"), 250, 1000) == pytest.approx(1.5)


def test_guidance_outside_its_window_changes_nothing():
    alphas = torch.linspace(0.99, 0.01, 1000)

    def denoiser(x, t):
        return 0.1 * x

    guided = guided_denoiser(
        denoiser, alphas, Guidance(scale=5.0, window=(0.5, 1.0)), log_prob=red_reward().log_prob
    )
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(guided(x, torch.tensor(100)), denoiser(x, 0))
    assert not torch.allclose(guided(x, torch.tensor(900)), denoiser(x, 0))


@pytest.fixture(autouse=True)
def native_kernels():
    """oneDNN's first call per shape costs seconds on the CPU; tiny models run faster without."""
    with exact_cpu_kernels():
        yield


@pytest.fixture(scope="module")
def tiny_censored(tiny_sd):
    pipe = CensoredStableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe.set_progress_bar_config(disable=True) or pipe


def _run(pipe, reward, seeds, **kw) -> np.ndarray:
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = pipe(
        ["a red square"] * len(seeds),
        num_inference_steps=8,
        generator=gens,
        reward=reward,
        output_type="np",
        **kw,
    )
    return out.images


def test_guidance_steers_the_stable_diffusion_pipeline_both_ways(tiny_censored):
    seeds = [0, 1, 2, 3]
    plain = _run(tiny_censored, None, seeds)
    down = _run(tiny_censored, red_reward(+1), seeds, reward_scale=30.0)
    up = _run(tiny_censored, red_reward(-1), seeds, reward_scale=30.0)
    assert not np.array_equal(plain, down)
    # the reward's sign decides the direction: "less red is benign" lowers redness
    assert redness(down) < redness(plain) < redness(up)


def test_backward_guidance_and_recurrence_run_in_the_pipeline(tiny_censored):
    plain = _run(tiny_censored, None, [5])
    both = _run(tiny_censored, red_reward(), [5], reward_scale=0.0, backward_steps=3, recurrence=2)
    assert redness(both) < redness(plain)


def test_a_batch_gives_the_images_of_one_by_one(tiny_censored):
    seeds = [7, 8, 9]
    batch = _run(tiny_censored, red_reward(), seeds, reward_scale=20.0, backward_steps=2)
    single = np.concatenate(
        [_run(tiny_censored, red_reward(), [s], reward_scale=20.0, backward_steps=2) for s in seeds]
    )
    assert np.abs(batch.astype(int) - single.astype(int)).max() <= 1


def test_from_pipe_shares_the_components(tiny_sd):
    base = StableDiffusionPipeline.from_pretrained(tiny_sd)
    censored = CensoredStableDiffusionPipeline.from_pipe(base)
    assert censored.unet is base.unet and censored.vae is base.vae


def test_unconditional_pipeline_with_guidance(tiny_uncond):
    pipe = CensoredDDPMPipeline.from_pretrained(tiny_uncond)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    plain = pipe(2, 6, [torch.Generator().manual_seed(s) for s in (0, 1)], output_type="np")
    guided = pipe(2, 6, gens, reward=red_reward(), reward_scale=20.0, output_type="np")
    assert redness(guided.images) < redness(plain.images)


def test_censor_writes_scores_matches_generate_and_refuses_other_settings(tiny_sd, tmp_path):
    cfg = CensorConfig(
        model=str(tiny_sd),
        prompt="a red square",
        n=3,
        steps=6,
        out=tmp_path / "c",
        reward=tmp_path / "unused",
        scale=20.0,
        batch_size=3,
    )
    censor = Censor(red_reward(), Guidance(scale=20.0))
    out = generate(generate_config(cfg), censor=censor)
    records = read_metadata(out)
    assert len(records) == 3
    assert all(r["reward_prob"] > 0 and len(r["reward_members"]) == 1 for r in records)
    assert json.loads((out / "run.json").read_text())["command"] == "censor"
    # the same seeds without guidance: other pixels
    plain = generate(dataclasses_replace(generate_config(cfg), out=tmp_path / "plain"))
    assert redness(np.stack(list(pixels(out).values()))) < redness(
        np.stack(list(pixels(plain).values()))
    )
    # resuming the folder with another guidance is refused
    with pytest.raises(UnseeError, match="other settings"):
        generate(generate_config(cfg), censor=Censor(red_reward(), Guidance(scale=5.0)))


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_censor_config_refuses_bad_options(tmp_path):
    base = {"out": tmp_path, "reward": tmp_path, "prompt": "x"}
    with pytest.raises(UnseeError, match="window"):
        CensorConfig(**base, window=[0.8, 0.2])
    with pytest.raises(UnseeError, match="recurrence"):
        CensorConfig(**base, recurrence=2, scheduler="euler")


def test_reject_replaces_the_images_the_reward_flags(tiny_sd, tmp_path):
    """A random cnn reward and a threshold at the median of the first round's scores:
    about half the first samples fail and are replaced by fresh seeds until all pass."""
    from unsee.censor.reject import reject_sample
    from unsee.guidance.hook import reward_scores
    from unsee.imageset import load_images, read_image_set
    from unsee.reward.cnn import CnnReward
    from unsee.reward.model import load_reward

    torch.manual_seed(0)
    reward_dir = tmp_path / "reward"
    RewardModel({"backbone": "cnn", "ensemble": 1, "image_size": 32}, [CnnReward(32)]).save(
        reward_dir
    )
    common = {"model": str(tiny_sd), "prompt": "a red square", "n": 6, "steps": 4, "seed": 3}
    first = generate(GenerateConfig(**common, out=tmp_path / "first"))
    probs = [
        s["reward_prob"]
        for s in reward_scores(
            load_reward(reward_dir).score_images(load_images(first, read_image_set(first), None))
        )
    ]
    threshold = float(np.median(probs))
    out = reject_sample(
        CensorConfig(
            **common,
            out=tmp_path / "r",
            reward=reward_dir,
            reject=True,
            threshold=threshold,
            budget=20,
        )
    )
    records = read_metadata(out)
    assert [r["index"] for r in records] == list(range(6))
    assert all(r["reward_prob"] > threshold for r in records)
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] and run["samples"] > 6
    kept = [r for r in records if r["attempt"] == 0]
    assert len(kept) == sum(p > threshold for p in probs)
    assert not (out / "candidates").exists()
    # an impossible threshold spends the budget, 2 samples per image, and says so
    with pytest.raises(UnseeError, match="did not pass within 2 samples each"):
        reject_sample(
            CensorConfig(
                **common,
                out=tmp_path / "r2",
                reward=reward_dir,
                reject=True,
                threshold=0.999,
                budget=2,
            )
        )
    assert json.loads((tmp_path / "r2" / "run.json").read_text())["samples"] == 2 * 6


def test_retry_resamples_what_the_reward_flags_and_keeps_the_better_sample(tiny_sd, tmp_path):
    """Guided images under a threshold at the median reward are drawn again from fresh
    seeds: no image's score falls, a replaced image is the one its sample_seed makes, and
    a rerun of the finished folder changes nothing."""
    from unsee.censor.retry import retry_flagged, retry_seed
    from unsee.imageset import read_finished

    cfg = CensorConfig(
        model=str(tiny_sd), prompt="a red square", n=6, steps=4, seed=5, out=tmp_path / "c",
        reward=tmp_path / "unused", scale=2.0, batch_size=6,
    )  # fmt: skip
    censor = Censor(red_reward(), Guidance(scale=2.0))
    out = generate(generate_config(cfg), censor=censor)
    before = {r["index"]: r for r in read_metadata(out)}
    threshold = float(np.median([r["reward_prob"] for r in before.values()]))
    cfg = dataclasses_replace(cfg, threshold=threshold, retry=3)
    summary = retry_flagged(out, cfg, censor)

    after = {r["index"]: r for r in read_metadata(out)}
    assert sorted(after) == list(range(6))
    assert all(after[i]["reward_prob"] >= before[i]["reward_prob"] for i in after)
    first_flagged = sum(r["reward_prob"] <= threshold for r in before.values())
    assert first_flagged > 0 and summary["samples"] >= first_flagged
    assert summary["still_flagged"] == sum(r["reward_prob"] <= threshold for r in after.values())
    replaced = [r for r in after.values() if "attempt" in r]
    assert len(replaced) == summary["replaced"] > 0
    run = json.loads((out / "run.json").read_text())
    assert run["retry"] == summary and not (out / "retry").exists()
    # a replaced image keeps its planned seed and is what its sample_seed draws
    r = replaced[0]
    assert r["seed"] == before[r["index"]]["seed"]
    assert r["sample_seed"] == retry_seed(r["seed"], r["attempt"]) != r["seed"]
    again = tmp_path / "again.csv"
    again.write_text(f"prompt,evaluation_seed\n{r['prompt']},{r['sample_seed']}\n")
    redo = generate(
        dataclasses_replace(
            generate_config(cfg), prompt=None, prompts=again, n=1, out=tmp_path / "redo"
        ),
        censor=censor,
    )
    assert np.array_equal(next(iter(pixels(redo).values())), pixels(out)[r["file_name"]])
    # the finished folder reruns: generate resumes it, retry finds its rounds done
    files = {i: rec for i, rec in read_finished(out).items()}
    generate(generate_config(cfg), censor=censor)
    assert retry_flagged(out, cfg, censor) == summary
    assert read_finished(out) == files
    assert json.loads((out / "run.json").read_text())["seconds"] == pytest.approx(
        run["seconds"], abs=1.0
    )


def test_retry_is_refused_with_reject_or_below_zero(tmp_path):
    base = {"out": tmp_path, "reward": tmp_path, "prompt": "x"}
    with pytest.raises(UnseeError, match="--retry must be"):
        CensorConfig(**base, retry=-1)
    with pytest.raises(UnseeError, match="--reject has --budget"):
        CensorConfig(**base, retry=2, reject=True)


def test_checkpointing_auto_is_off_on_the_cpu_and_on_when_asked():
    from types import SimpleNamespace

    from unsee.guidance.hook import Censor
    from unsee.guidance.reward_guidance import Guidance

    pipe = SimpleNamespace(
        device=torch.device("cpu"), unet=SimpleNamespace(config=SimpleNamespace(sample_size=64))
    )
    reward = object()
    assert not Censor(reward, Guidance(), checkpointing="auto")._use_checkpointing(pipe, None, 64)
    assert Censor(reward, Guidance(), checkpointing="on")._use_checkpointing(pipe, None, 1)
    assert not Censor(reward, Guidance(), checkpointing="off")._use_checkpointing(pipe, None, 1)


def test_a_gradient_through_cfg_sums_its_parts_as_the_two_copy_forward_does(tiny_sd):
    """Guided sampling differentiates f(x, eps(x)): x reaches the loss directly and through
    both CFG copies. Its gradient must be bit for bit the one of the plain two-copy forward
    (unet(cat([x[i], x[i]]))): summed in another order it moves by an ulp, and guided
    images, which amplify it, by up to 100 grey levels (as 6cdaa68 did)."""
    from unsee.sampling.denoiser import text_denoiser

    unet = StableDiffusionPipeline.from_pretrained(tiny_sd).unet
    torch.manual_seed(0)
    cond, uncond = torch.randn(2, 3, 77, unet.config.cross_attention_dim)
    x0 = torch.randn(3, unet.config.in_channels, 16, 16)
    t = torch.tensor(500)

    def reference(x, t):
        states = torch.cat([uncond, cond])
        e_u, e_c = unet(torch.cat([x[:], x[:]]), t, encoder_hidden_states=states).sample.chunk(2)
        return e_u + 7.5 * (e_c - e_u)

    grads = []
    with exact_cpu_kernels():
        for eps in (reference, text_denoiser(unet, cond, uncond, 7.5)):
            x = x0.clone().requires_grad_(True)
            loss = ((x - 0.3 * eps(x, t)) ** 2).sum()  # x directly and through eps
            grads.append(torch.autograd.grad(loss, x)[0])
    assert torch.equal(grads[0], grads[1])
