"""bf16 compute with fp32 masters (erase/precision.py), run on the CPU: what the GPU path
computes, within bf16's tolerance of the fp32 U-Net, and what it leaves untouched."""

import json

import pytest
import torch

from unsee.erase.params import select_parameters
from unsee.erase.precision import half_call, half_student
from unsee.models.tiny import tiny_sd_pipeline


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 16, 16, generator=g)
    c = torch.randn(2, 77, 32, generator=g)
    return z, torch.tensor([500, 300]), c


@pytest.mark.parametrize("scope", ["cross-attention", "lora"])
def test_half_student_matches_the_fp32_unet_and_its_gradients_reach_the_fp32_masters(scope):
    unet = tiny_sd_pipeline(seed=1).unet
    params = select_parameters(unet, scope, lora_rank=2)
    if scope == "lora":  # lora_B starts at zero: give it weights, so its gradient is not 0
        with torch.no_grad():
            for p in params.values():
                p.normal_(0, 0.1)
    student = half_student(unet, params, torch.bfloat16, checkpointing=False)
    z, t, c = _inputs()
    ref = unet(z, t, encoder_hidden_states=c).sample
    out = student(z, t, encoder_hidden_states=c).sample
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).norm() / ref.norm()
    assert err < 2e-2, err  # bf16 operands: 1e-3 .. 1e-2
    # the gradient of the same loss lands on the fp32 masters, close to fp32's own
    (ref**2).mean().backward()
    want = {n: p.grad.clone() for n, p in params.items()}
    for p in params.values():
        p.grad = None
    (out.float() ** 2).mean().backward()
    for n, p in params.items():
        assert p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
        rel = (p.grad - want[n]).norm() / want[n].norm().clamp_min(1e-12)
        assert rel < 5e-2, (n, rel)
    # the frozen weights get no gradient anywhere
    assert all(p.grad is None for n, p in unet.named_parameters() if n not in params)


def test_half_student_reads_the_masters_at_every_call():
    unet = tiny_sd_pipeline(seed=1).unet
    params = select_parameters(unet, "cross-attention")
    student = half_student(unet, params, torch.bfloat16, checkpointing=False)
    z, t, c = _inputs()
    before = student(z, t, encoder_hidden_states=c).sample
    with torch.no_grad():
        for p in params.values():
            p.mul_(0)  # an optimiser step, say
    after = student(z, t, encoder_hidden_states=c).sample
    assert not torch.equal(before, after)
    zeroed = tiny_sd_pipeline(seed=1).unet
    for n, p in zeroed.named_parameters():
        if n in params:
            p.data.zero_()
    ref = zeroed(z, t, encoder_hidden_states=c).sample
    assert (after.float() - ref).norm() / ref.norm() < 2e-2


def test_half_student_with_gradient_checkpointing_gives_the_same_gradients():
    """Checkpointing re-runs the blocks in the backward pass: they must read the same cast
    weights then (with torch.func.functional_call they did not, and the backward failed)."""
    grads = []
    for checkpointing in (False, True):
        unet = tiny_sd_pipeline(seed=1).unet
        params = select_parameters(unet, "cross-attention")
        student = half_student(unet, params, torch.bfloat16, checkpointing=checkpointing)
        z, t, c = _inputs()
        (student(z, t, encoder_hidden_states=c).sample.float() ** 2).mean().backward()
        grads.append({n: p.grad for n, p in params.items()})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, msg=n)


def test_half_call_casts_inputs_and_runs_outside_autocast():
    unet = tiny_sd_pipeline(seed=1).unet.requires_grad_(False)
    half = tiny_sd_pipeline(seed=1).unet.requires_grad_(False).to(torch.bfloat16)
    z, t, c = _inputs(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the erase loop's contexts are
        out = half_call(half)(z, t, encoder_hidden_states=c).sample
    ref = unet(z, t, encoder_hidden_states=c).sample
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).norm() / ref.norm() < 2e-2


@pytest.mark.parametrize("method", ["sdd", "esd-x"])
def test_erase_in_pure_bf16_changes_only_the_chosen_weights(
    tiny_sd, tmp_path, monkeypatch, method, fresh_accelerator
):
    """The GPU's bf16 path, forced on the CPU: the loop runs, the frozen weights are saved
    bit for bit as loaded (fp32), the trained ones move, and the losses follow autocast's."""
    from diffusers import UNet2DConditionModel

    import unsee.erase.run as run
    from unsee.erase.config import EraseConfig

    monkeypatch.setattr(run, "_mixed_precision", lambda cfg: "bf16")
    used = []
    real = run.half_student
    monkeypatch.setattr(run, "half_student", lambda *a: used.append(1) or real(*a))

    def cfg(out, mixed):
        return EraseConfig(model=str(tiny_sd), out=out, concept=["a red square"], iterations=3,
                           batch=2, sample_steps=4, lr=1e-3, checkpoint_every=0, device="cpu",
                           seed=1, method=method, mixed=mixed, reuse=1)  # fmt: skip

    before = dict(UNet2DConditionModel.from_pretrained(tiny_sd / "unet").named_parameters())
    run.erase(cfg(tmp_path / "pure", "pure"))
    assert used == [1]
    run.erase(cfg(tmp_path / "autocast", "autocast"))
    assert used == [1]  # autocast does not take the half path
    saved = UNet2DConditionModel.from_pretrained(tmp_path / "pure" / "unet")
    after = dict(saved.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(".attn2." in n for n in moved)
    assert all(after[n].dtype == torch.float32 for n in after)
    pure = json.loads((tmp_path / "pure" / "erase.json").read_text())["loss_first"]
    auto = json.loads((tmp_path / "autocast" / "erase.json").read_text())["loss_first"]
    for a, b in zip(pure, auto, strict=True):
        assert abs(a - b) <= 0.05 * abs(b) + 1e-4, (pure, auto)
