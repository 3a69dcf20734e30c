import json

import pytest
import torch

from unsee.erase.sdd import ema_update, sdd_loss, stop_steps, train_timesteps


def test_sdd_loss_is_the_hand_computed_mean_square_and_only_moves_the_concept_term():
    e0 = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    es = torch.tensor([[0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    loss = sdd_loss(e0, es)
    assert loss.item() == (1 + 0 + 1 + 4) / 4
    loss.backward()
    assert e0.grad is None  # the unconditional estimate is the target
    torch.testing.assert_close(es.grad, 2 * (es - e0).detach() / 4)


def test_stop_steps_stay_inside_the_trajectory_and_beta_favours_the_middle():
    g = torch.Generator().manual_seed(0)
    uniform = stop_steps(20000, 50, "uniform", (3, 3), g)
    beta = stop_steps(20000, 50, "beta", (3, 3), g)
    for s in (uniform, beta):
        assert s.min() >= 1 and s.max() <= 49
    middle = lambda s: ((s >= 17) & (s <= 33)).float().mean()  # noqa: E731
    assert middle(beta) > middle(uniform) + 0.2
    assert abs(beta.float().mean() - 25) < 0.5


def test_training_timesteps_fall_inside_the_ddim_interval():
    timesteps = torch.arange(980, -1, -20)  # 50 DDIM steps over 1000
    stops = torch.tensor([1, 10, 49])
    t = train_timesteps(timesteps, stops, 1000, torch.Generator().manual_seed(0))
    for ti, k in zip(t, stops, strict=True):
        assert timesteps[k] - 20 < ti <= timesteps[k]


def test_ema_update():
    ema, p = [torch.zeros(3)], [torch.ones(3)]
    ema_update(ema, p, 0.9)
    torch.testing.assert_close(ema[0], torch.full((3,), 0.1))


def test_parameter_scopes_on_a_tiny_unet():
    import pytest

    from unsee.erase.params import select_parameters
    from unsee.models.tiny import tiny_sd_pipeline

    unet = tiny_sd_pipeline().unet
    total = sum(p.numel() for p in unet.parameters())
    cross = select_parameters(unet, "cross-attention")
    assert cross and all(".attn2." in n for n in cross)
    assert sum(p.requires_grad for p in unet.parameters()) == len(cross)
    kv = select_parameters(unet, "cross-attention-kv")
    assert kv and set(kv) < set(cross)
    assert all(".attn2.to_k." in n or ".attn2.to_v." in n for n in kv)
    assert sum(p.requires_grad for p in unet.parameters()) == len(kv)
    rest = select_parameters(unet, "all-but-cross-attention")
    assert sum(p.numel() for p in rest.values()) + sum(p.numel() for p in cross.values()) == total
    assert not any(".attn2." in n for n in rest)
    lora = select_parameters(unet, "lora", lora_rank=2)
    assert lora and all("lora_" in n and ".attn2." in n for n in lora)
    assert sum(p.requires_grad for p in unet.parameters()) == len(lora)
    with pytest.raises(ValueError, match="unknown"):
        select_parameters(unet, "everything")


def test_teacher_trajectories_stop_where_asked_and_match_one_by_one():
    from diffusers import DDIMScheduler

    from unsee.erase.sdd import teacher_latents
    from unsee.models.tiny import tiny_sd_pipeline
    from unsee.sampling.denoiser import exact_cpu_kernels

    pipe = tiny_sd_pipeline()
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(6)
    cond = pipe.encode_prompt(["a red circle"] * 3, "cpu", 1, False)[0]
    uncond = pipe.encode_prompt([""] * 3, "cpu", 1, False)[0]
    z_T = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    stops = torch.tensor([1, 3, 5])
    with exact_cpu_kernels():
        together = teacher_latents(pipe.unet, sched, cond, uncond, stops, 3.0, z_T)
        for b in range(3):
            alone = teacher_latents(
                pipe.unet, sched, cond[b : b + 1], uncond[b : b + 1], stops[b : b + 1], 3.0,
                z_T[b : b + 1],
            )  # fmt: skip
            torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def _erase_cfg(tiny_sd, out, **kw):
    from unsee.erase.config import EraseConfig

    base = dict(model=str(tiny_sd), out=out, concept=["a red square"], iterations=4, batch=2,
                sample_steps=4, lr=1e-3, checkpoint_every=2, device="cpu", seed=1)  # fmt: skip
    return EraseConfig(**{**base, **kw})


def _unet(path):
    from diffusers import UNet2DConditionModel

    return dict(UNet2DConditionModel.from_pretrained(path / "unet").named_parameters())


def test_sdd_changes_only_cross_attention_and_saves_the_ema(tiny_sd, tmp_path):
    from unsee.erase.run import erase

    before = _unet(tiny_sd)
    slow = _unet(erase(_erase_cfg(tiny_sd, tmp_path / "ema", ema=0.999)))
    fast = _unet(erase(_erase_cfg(tiny_sd, tmp_path / "student", ema=0.0)))
    moved = {n for n in before if not torch.equal(before[n], fast[n])}
    assert moved and all(".attn2." in n for n in moved)
    # the saved weights are the EMA: with momentum 0.999 they barely leave the original
    drift_ema = sum((slow[n] - before[n]).abs().sum() for n in moved)
    drift_student = sum((fast[n] - before[n]).abs().sum() for n in moved)
    assert 0 < drift_ema < 0.01 * drift_student
    card = (tmp_path / "ema" / "README.md").read_text()
    assert "a red square" in card and '"method": "sdd"' in card


@pytest.mark.parametrize("reuse", [1, 4])  # 4: the pool of walked samples is checkpointed too
def test_killed_erase_resumes_to_the_same_weights(tiny_sd, tmp_path, monkeypatch, reuse):
    from unsee.erase import run

    straight = _unet(run.erase(_erase_cfg(tiny_sd, tmp_path / "a", reuse=reuse)))
    real = run.ema_update
    calls = {"n": 0}

    def die_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "ema_update", die_on_third)
    with pytest.raises(KeyboardInterrupt):
        run.erase(_erase_cfg(tiny_sd, tmp_path / "b", reuse=reuse))
    assert (tmp_path / "b" / run.CHECKPOINT).exists()
    monkeypatch.setattr(run, "ema_update", real)
    resumed = _unet(run.erase(_erase_cfg(tiny_sd, tmp_path / "b", resume=True, reuse=reuse)))
    for n, p in straight.items():
        torch.testing.assert_close(resumed[n], p, rtol=0, atol=0, msg=n)
    assert not (tmp_path / "b" / run.CHECKPOINT).exists()


def test_esd_target_and_esd_u_trains_outside_cross_attention(tiny_sd, tmp_path):
    from unsee.erase.esd import esd_target
    from unsee.erase.run import erase

    e0, ec = torch.tensor([1.0, 0.0]), torch.tensor([3.0, -1.0])
    torch.testing.assert_close(esd_target(e0, ec, 1.0), torch.tensor([-1.0, 1.0]))
    before = _unet(tiny_sd)
    after = _unet(erase(_erase_cfg(tiny_sd, tmp_path / "u", method="esd-u", iterations=2)))
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and not any(".attn2." in n for n in moved)


def test_lora_erase_loads_in_plain_diffusers(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline

    from unsee.erase.run import erase

    out = erase(_erase_cfg(tiny_sd, tmp_path / "lora", save="lora", iterations=2, ema=0.0))
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    base = pipe(
        "x", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)
    ).images
    pipe.load_lora_weights(out)
    erased = pipe(
        "x", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)
    ).images
    assert not (base == erased).all()


def test_erase_refuses_bad_input(tiny_sd, tmp_path):
    import pytest

    from unsee.errors import UnseeError

    with pytest.raises(UnseeError, match="what to remove"):
        _erase_cfg(tiny_sd, tmp_path / "x", concept=[])
    with pytest.raises(UnseeError, match="nothing to resume"):
        from unsee.erase.run import erase

        erase(_erase_cfg(tiny_sd, tmp_path / "y", resume=True))
    # a refused --preserve (or a missing one) leaves no empty --out behind
    keep = tmp_path / "keep.txt"
    concept = _erase_cfg(tiny_sd, tmp_path / "z").concept[0]
    keep.write_text(f"{concept}\n")
    with pytest.raises(UnseeError, match="--preserve lists what is to be removed"):
        erase(_erase_cfg(tiny_sd, tmp_path / "z", preserve=keep))
    assert not (tmp_path / "z").exists()
    with pytest.raises(UnseeError):
        erase(_erase_cfg(tiny_sd, tmp_path / "z", preserve=tmp_path / "missing.txt"))
    assert not (tmp_path / "z").exists()


def test_erase_runs_on_two_processes_under_accelerate(tiny_sd, tmp_path):
    import os
    import subprocess
    import sys

    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "unsee", "erase", "--model", str(tiny_sd), "--concept", "a red square",
        "--iterations", "4", "--batch", "2", "--sample-steps", "4", "--lr", "1e-3",
        "--checkpoint-every", "2", "--device", "cpu", "--out", str(tmp_path / "multi"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((tmp_path / "multi" / "erase.json").read_text())
    assert info["processes"] == 2
    before, after = _unet(tiny_sd), _unet(tmp_path / "multi")
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_sdd_on_a_learned_token_and_text_together(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from unsee.erase.run import erase

    token = tmp_path / "look.safetensors"
    save_file({"<look>": torch.randn(2, 32, generator=torch.Generator().manual_seed(0))}, token)
    out = erase(_erase_cfg(tiny_sd, tmp_path / "e", concept=["a red square"], embedding=[token]))
    info = json.loads((out / "erase.json").read_text())
    assert info["concepts"] == ["a red square", "<look>"]
    # the saved pipeline keeps the original text encoder: the token is not baked in
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert "<look>" not in pipe.tokenizer.get_vocab()
    before = _unet(tiny_sd)
    after = dict(pipe.unet.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_preservation_loss_is_a_mean_square_to_a_fixed_target():
    from unsee.erase.sdd import preservation_loss

    student = torch.tensor([[1.0, -1.0]], requires_grad=True)
    original = torch.tensor([[0.0, 1.0]], requires_grad=True)
    loss = preservation_loss(student, original)
    assert loss.item() == (1 + 4) / 2
    loss.backward()
    assert original.grad is None


def test_preserve_keeps_the_kept_prompts_closer_to_the_original(tiny_sd, tmp_path):
    """Same seed and steps, with and without --preserve: the student's estimate for a kept
    prompt moves less from the original's, while the concept still moves."""
    import pytest
    from diffusers import UNet2DConditionModel

    from unsee.erase.run import encode_texts, erase
    from unsee.errors import UnseeError
    from unsee.models.load import load_pipeline

    keep = tmp_path / "keep.txt"
    keep.write_text("a blue circle\na green triangle\n")
    common = dict(iterations=6, ema=0.0, lr=3e-3, checkpoint_every=0)
    free = erase(_erase_cfg(tiny_sd, tmp_path / "free", **common))
    kept = erase(
        _erase_cfg(tiny_sd, tmp_path / "kept", preserve=keep, preserve_weight=20.0, **common)
    )
    pipe = load_pipeline(str(tiny_sd), "cpu", "fp32")
    texts = encode_texts(pipe, ["a blue circle", "a green triangle", "a red square"], "cpu")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([500, 300, 500])

    def eps(unet):
        with torch.no_grad():
            return unet(z, t, encoder_hidden_states=texts).sample

    base = eps(pipe.unet)
    moved = {}
    for name, path in (("free", free), ("kept", kept)):
        unet = UNet2DConditionModel.from_pretrained(path / "unet")
        moved[name] = ((eps(unet) - base) ** 2).mean((1, 2, 3))
    assert moved["kept"][:2].sum() < 0.5 * moved["free"][:2].sum()
    assert moved["kept"][2] > 0
    # a prompt to keep that is also to be removed is refused
    keep.write_text("a red square\n")
    with pytest.raises(UnseeError, match="lists what is to be removed"):
        erase(_erase_cfg(tiny_sd, tmp_path / "both", preserve=keep))


def test_unset_options_take_the_models_defaults(tmp_path):
    from unsee.erase.config import PAPER_DEFAULTS, WORLD_DEFAULTS, EraseConfig

    world = EraseConfig(out=tmp_path, concept=["x"])
    assert {k: getattr(world, k) for k in WORLD_DEFAULTS} == WORLD_DEFAULTS
    sd = EraseConfig(model="runwayml/stable-diffusion-v1-5", out=tmp_path, concept=["x"])
    assert {k: getattr(sd, k) for k in PAPER_DEFAULTS} == PAPER_DEFAULTS
    given = EraseConfig(out=tmp_path, concept=["x"], lr=5e-5, iterations=7)
    assert (given.lr, given.iterations, given.batch) == (5e-5, 7, WORLD_DEFAULTS["batch"])
    # training most of minisd's U-Net (esd-u, full) takes a tenth of the learning rate
    from unsee.erase.config import WORLD_WIDE_LR

    esd_u = EraseConfig(out=tmp_path, concept=["x"], method="esd-u")
    assert (esd_u.params, esd_u.lr) == ("all-but-cross-attention", WORLD_WIDE_LR)
    assert EraseConfig(out=tmp_path, concept=["x"], params="full").lr == WORLD_WIDE_LR
    assert EraseConfig(out=tmp_path, concept=["x"], method="esd-x").lr == WORLD_DEFAULTS["lr"]
    assert EraseConfig(out=tmp_path, concept=["x"], method="esd-u", lr=3e-3).lr == 3e-3
    sd_u = EraseConfig(model="some/sd", out=tmp_path, concept=["x"], method="esd-u")
    assert sd_u.lr == PAPER_DEFAULTS["lr"]


def test_neg_target_is_the_negative_prompt_under_guidance():
    """The distilled negative prompt's targets, guided at scale w with eta = 1 - 1/w, give
    exactly what the original gives with the concept as negative prompt."""
    from unsee.erase.neg import neg_loss, neg_target

    e0, ea, ec = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 2.0]), torch.tensor([3.0, -1.0])
    torch.testing.assert_close(neg_target(e0, ea, ec, 1.0), torch.tensor([0.0, 3.0]))
    g = torch.Generator().manual_seed(0)
    e0, ea, ec = (torch.randn(4, 3, generator=g) for _ in range(3))
    w = 7.5
    erased = e0 + w * (neg_target(e0, ea, ec, 1 - 1 / w) - e0)
    negative_prompt = ec + w * (ea - ec)
    torch.testing.assert_close(erased, negative_prompt)
    # the loss: both terms mean squares to fixed targets
    sa = torch.tensor([[1.0, 1.0]], requires_grad=True)
    s0 = torch.tensor([[0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[1.0, 3.0]], requires_grad=True)
    loss = neg_loss(sa, s0, target, torch.tensor([[2.0, 0.0]]))
    assert loss.item() == (0 + 4) / 2 + (4 + 0) / 2
    loss.backward()
    assert target.grad is None and sa.grad is not None and s0.grad is not None


def test_neg_moves_the_anchor_estimates_to_their_targets(tiny_sd, tmp_path):
    import pytest
    from diffusers import UNet2DConditionModel

    from unsee.erase.neg import neg_target
    from unsee.erase.run import encode_texts, erase
    from unsee.errors import UnseeError
    from unsee.models.load import load_pipeline

    anchors = tmp_path / "anchors.txt"
    anchors.write_text("a red square on grass\na red square at night\n")
    with pytest.raises(UnseeError, match="needs --anchors"):
        _erase_cfg(tiny_sd, tmp_path / "none", method="neg")
    with pytest.raises(UnseeError, match="for --method neg only"):
        _erase_cfg(tiny_sd, tmp_path / "sdd", anchors=anchors)
    out = erase(
        _erase_cfg(tiny_sd, tmp_path / "neg", method="neg", anchors=anchors, eta=20.0,
                   iterations=8, lr=1e-3, checkpoint_every=0)
    )  # fmt: skip
    before = _unet(tiny_sd)
    after = _unet(out)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(".attn2." in n for n in moved)
    assert '"method": "neg"' in (out / "README.md").read_text()

    pipe = load_pipeline(str(tiny_sd), "cpu", "fp32")
    c0, ca, cs = encode_texts(pipe, ["", "a red square on grass", "a red square"], "cpu")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([700, 500, 300, 100])

    def eps(unet, c):
        with torch.no_grad():
            return unet(z, t, encoder_hidden_states=c.expand(4, -1, -1)).sample

    # (a large eta: the tiny random model's concept direction is small)
    target = neg_target(eps(pipe.unet, c0), eps(pipe.unet, ca), eps(pipe.unet, cs), 20.0)
    student = UNet2DConditionModel.from_pretrained(out / "unet")
    gap_before = ((eps(pipe.unet, ca) - target) ** 2).mean()
    gap_after = ((eps(student, ca) - target) ** 2).mean()
    assert gap_after < 0.8 * gap_before

    # an anchor listed twice is drawn twice as often: the same seed trains other weights
    twice = tmp_path / "twice.txt"
    twice.write_text("a red square on grass\na red square at night\na red square at night\n")
    short = dict(method="neg", iterations=2, checkpoint_every=0)
    runs = {
        name: _unet(erase(_erase_cfg(tiny_sd, tmp_path / name, anchors=path, **short)))
        for name, path in (("once", anchors), ("once_again", anchors), ("twice", twice))
    }
    assert all(torch.equal(runs["once"][n], runs["once_again"][n]) for n in moved)
    assert not all(torch.equal(runs["once"][n], runs["twice"][n]) for n in moved)


def test_several_stops_on_one_walk_are_the_single_stop_latents():
    from diffusers import DDIMScheduler

    from unsee.erase.sdd import teacher_latents
    from unsee.models.tiny import tiny_sd_pipeline
    from unsee.sampling.denoiser import exact_cpu_kernels

    pipe = tiny_sd_pipeline()
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(6)
    cond = pipe.encode_prompt(["a red circle"] * 2, "cpu", 1, False)[0]
    uncond = pipe.encode_prompt([""] * 2, "cpu", 1, False)[0]
    z_T = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    stops = torch.tensor([[2, 5, 2], [1, 3, 4]])  # (B, K): repeats allowed
    with exact_cpu_kernels():
        many = teacher_latents(pipe.unet, sched, cond, uncond, stops, 3.0, z_T)
        assert many.shape == (2, 3, 4, 16, 16)
        for k in range(3):
            one = teacher_latents(pipe.unet, sched, cond, uncond, stops[:, k], 3.0, z_T)
            torch.testing.assert_close(many[:, k], one, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(many[0, 0], many[0, 2])
    assert not torch.allclose(many[0, 0], many[0, 1])


@pytest.mark.parametrize("method", ["sdd", "esd-x"])
def test_reuse_walks_one_trajectory_per_k_samples(tiny_sd, tmp_path, monkeypatch, method):
    import unsee.erase.run as run

    walks = []
    real = run.teacher_latents

    def counting(unet, scheduler, cond, uncond, stops, cfg_scale, z_T):
        walks.append(tuple(stops.shape))
        return real(unet, scheduler, cond, uncond, stops, cfg_scale, z_T)

    monkeypatch.setattr(run, "teacher_latents", counting)
    run.erase(_erase_cfg(tiny_sd, tmp_path / "k1", method=method, reuse=1, checkpoint_every=0))
    assert walks == [(2,)] * 4  # a fresh pair of trajectories every step
    walks.clear()
    run.erase(_erase_cfg(tiny_sd, tmp_path / "k4", method=method, reuse=4, checkpoint_every=0))
    assert walks == [(2, 4)]  # 2 trajectories x 4 stops feed the 4 steps of 2 samples
    one, four = _unet(tmp_path / "k1"), _unet(tmp_path / "k4")
    assert any(not torch.equal(one[n], four[n]) for n in one)
