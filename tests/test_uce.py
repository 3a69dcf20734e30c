"""--method uce: Unified Concept Editing's closed form (src/unsee/erase/uce.py) and its run."""

import json

import pytest
import torch

from unsee.erase.uce import edited_rows, uce_objective, uce_right_factor, uce_weight


def _problem(d_out=6, d_in=12, n_e=3, n_p=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    w_old = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    erase, target, keep = (
        torch.randn(n, d_in, generator=g, dtype=torch.float64) for n in (n_e, n_e, n_p)
    )
    return w_old, erase, target, keep


@pytest.mark.parametrize("scales", [(1.0, 1.0, 0.5), (2.0, 0.1, 0.01), (0.3, 5.0, 3.0)])
def test_the_closed_form_solves_its_normal_equations(scales):
    e, p, lam = scales
    w_old, erase, target, keep = _problem()
    w = uce_weight(w_old, erase, target, keep, e, p, lam).requires_grad_(True)
    assert w.dtype == torch.float64 and w.shape == w_old.shape
    loss = uce_objective(w, w_old, erase, target, keep, e, p, lam)
    (grad,) = torch.autograd.grad(loss, w)
    # the gradient of the quadratic vanishes at the solution (scale: the gradient at W_old)
    w0 = w_old.clone().requires_grad_(True)
    (grad0,) = torch.autograd.grad(uce_objective(w0, w_old, erase, target, keep, e, p, lam), w0)
    assert grad.abs().max() < 1e-10 * grad0.abs().max()
    # and, the objective being convex, any step away costs
    step = 1e-3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=w.dtype)
    assert uce_objective(w.detach() + step, w_old, erase, target, keep, e, p, lam) > loss


@pytest.mark.parametrize("scales", [(1.0, 1.0, 0.5), (2.0, 0.1, 0.01)])
def test_the_shared_right_factor_gives_the_closed_form_for_every_weight(scales):
    w_old, erase, target, keep = _problem()
    k = uce_right_factor(erase, target, keep, *scales)
    for seed in range(3):
        w = torch.randn(5, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        w = w_old if seed == 0 else w
        torch.testing.assert_close(w @ k, uce_weight(w, erase, target, keep, *scales),
                                   rtol=1e-10, atol=1e-10)  # fmt: skip


def test_a_float32_weight_is_solved_in_float64():
    w_old, erase, target, keep = _problem()
    low = uce_weight(w_old.float(), erase.float(), target.float(), keep.float())
    assert low.dtype == torch.float64
    high = uce_weight(w_old.float().double(), erase.float().double(), target.float().double(),
                      keep.float().double())  # fmt: skip
    torch.testing.assert_close(low, high, rtol=0, atol=0)


def test_preserved_outputs_stay_and_erased_ones_take_the_targets():
    # more input dimensions than vectors, so every constraint can hold at once
    w_old, erase, target, keep = _problem(d_out=8, d_in=40, n_e=3, n_p=10)
    w = uce_weight(w_old, erase, target, keep, erase_scale=1.0, preserve_scale=1e6, lam=1e-3)
    # preserved concepts: outputs unchanged to tolerance with a large preserve weight
    kept_before, kept_after = keep @ w_old.T, keep @ w.T
    assert (kept_after - kept_before).norm() < 1e-6 * kept_before.norm()
    # erased concepts: their keys/values are now the targets' (v* = W_old c*)
    v_star = target @ w_old.T
    before = (erase @ w_old.T - v_star).norm()
    after = (erase @ w.T - v_star).norm()
    assert after < 1e-3 * before
    # a small preserve weight keeps them less well
    loose = uce_weight(w_old, erase, target, keep, erase_scale=1.0, preserve_scale=1e-2, lam=1.0)
    assert (keep @ loose.T - kept_before).norm() > 1e3 * (kept_after - kept_before).norm()


def test_edited_rows_align_the_last_content_tokens():
    states = torch.arange(10.0).unsqueeze(1).expand(10, 2)  # position i holds i
    target = 100 + states
    # concept: start, a, b, end, pad... (4 tokens); target "": start, end, pad... (2 tokens)
    c, t = edited_rows(states, 4, target, 2)
    assert c[:, 0].tolist() == list(range(2, 10))
    assert t[:, 0].tolist() == [100 + i for i in range(0, 8)]
    # target "art": start, art, end (3 tokens): b meets art
    c, t = edited_rows(states, 4, target, 3)
    assert c[:, 0].tolist() == list(range(2, 10)) and t[:, 0].tolist() == list(range(101, 109))
    # a target longer than the concept: the concept keeps its last token on
    c, t = edited_rows(states, 3, target, 5)
    assert c[:, 0].tolist() == list(range(1, 8)) and t[:, 0].tolist() == list(range(103, 110))


def _cfg(tiny_sd, out, **kw):
    from unsee.erase.config import EraseConfig

    base = dict(model=str(tiny_sd), out=out, method="uce", concept=["a red square"],
                device="cpu")  # fmt: skip
    return EraseConfig(**{**base, **kw})


def _unet(path):
    from diffusers import UNet2DConditionModel

    return dict(UNet2DConditionModel.from_pretrained(path / "unet").named_parameters())


def test_uce_edits_only_cross_attention_keys_and_values_and_loads_in_diffusers(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline

    from unsee.erase.run import _n_tokens, encode_texts, erase

    out = erase(_cfg(tiny_sd, tmp_path / "uce"))
    before, after = _unet(tiny_sd), _unet(out)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    kv = {n for n in before if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))}
    assert kv and moved == kv
    info = json.loads((out / "erase.json").read_text())
    assert info["method"] == "uce" and info["concepts"] == ["a red square"]
    assert info["uce"]["targets"] == [""] and info["uce"]["preserve_scale"] == 1.0
    assert 0 <= info["edit_seconds"] <= info["seconds"]
    assert "iterations" not in info["settings"] and info["settings"]["uce_lambda"] == 0.5
    assert f"closed-form edit of {len(kv)} projections" in (out / "README.md").read_text()

    # a plain diffusers pipeline, the text encoder untouched
    pipe = StableDiffusionPipeline.from_pretrained(out)
    images = pipe("a red square", num_inference_steps=2, output_type="np").images
    assert images.shape[0] == 1
    original = StableDiffusionPipeline.from_pretrained(tiny_sd)
    for (n, p), q in zip(original.text_encoder.named_parameters(),
                         pipe.text_encoder.parameters(), strict=True):  # fmt: skip
        assert torch.equal(p, q), n

    # the concept's edited token vectors now give (nearer) the empty prompt's keys/values
    cs = encode_texts(original, ["a red square"], "cpu")[0]
    ts = encode_texts(original, [""], "cpu")[0]
    c, c_star = edited_rows(cs, _n_tokens(original, "a red square"), ts, _n_tokens(original, ""))
    for name in kv:
        w_old, w_new = before[name].detach(), after[name].detach()
        v_star = c_star @ w_old.T
        assert (c @ w_new.T - v_star).norm() < 0.6 * (c @ w_old.T - v_star).norm(), name
        # the empty prompt, always preserved, moves far less than the concept
        moved_empty = (ts @ w_new.T - ts @ w_old.T).norm()
        assert moved_empty < 0.5 * (c @ w_new.T - c @ w_old.T).norm(), name


def test_uce_with_a_target_preserved_prompts_and_a_learned_token(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from unsee.erase.run import erase

    token = tmp_path / "look.safetensors"
    save_file({"<look>": torch.randn(2, 32, generator=torch.Generator().manual_seed(0))}, token)
    keep = tmp_path / "keep.txt"
    keep.write_text("a blue circle\na green triangle\n")
    out = erase(_cfg(tiny_sd, tmp_path / "t", embedding=[token], uce_target=["art"],
                     preserve=keep))  # fmt: skip
    info = json.loads((out / "erase.json").read_text())
    assert info["concepts"] == ["a red square", "<look>"]
    assert info["uce"]["targets"] == ["art", "art"]
    # "" and the two kept prompts: 3 texts of 77 positions; preserve weight max(0.1, 1/3)
    assert info["uce"]["preserved_texts"] == 3 and info["uce"]["preserved_token_vectors"] == 231
    assert info["uce"]["preserve_scale"] == pytest.approx(1 / 3)
    # "a red square" from "square" (index 3) on, "<look>" (2 vectors) from its second on,
    # each aligned with "art" (index 1): 77 - 3 + 77 - 2 rows
    assert info["uce"]["erased_token_vectors"] == 74 + 75
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert "<look>" not in pipe.tokenizer.get_vocab()  # the token is not baked in


def test_n_tokens_counts_a_multi_vector_token_expanded(tiny_sd, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from unsee.erase.run import _n_tokens

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    assert _n_tokens(pipe, "") == 2 and _n_tokens(pipe, "a red square") == 5
    save_file({"<three>": torch.randn(3, 32)}, tmp_path / "t.safetensors")
    pipe.load_textual_inversion(str(tmp_path / "t.safetensors"))
    assert _n_tokens(pipe, "<three>") == 5  # start, 3 vectors, end


@pytest.mark.parametrize(
    "args,message",
    [
        (["--iterations", "5"], "--iterations is for the trained methods"),
        (["--lr", "1e-4", "--save", "lora"], "--lr, --save are for the trained methods"),
        (["--seed", "3"], "--seed is for the trained methods"),
        (["--resume"], "--resume is for the trained methods"),
        (["--params", "full"], "--params is for the trained methods"),
        (["--anchors", "a.txt"], "--anchors is for the trained methods"),
        (["--uce-target", "a", "b"], "one text for all concepts or one per concept (1)"),
        (["--uce-lambda", "0"], "--uce-lambda must be > 0"),
        (["--uce-preserve-scale", "-1"], "--uce-preserve-scale must be >= 0"),
    ],
)
def test_uce_refuses_training_options_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    from unsee.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(["erase", "--method", "uce", "--concept", "x", "--out", "o", *args])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("unsee: error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())


def test_uce_options_are_refused_with_the_trained_methods(tmp_path, capsys, monkeypatch):
    from unsee.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["erase", "--concept", "x", "--uce-target", "art", "--uce-lambda", "1", "--out", "o"])
    err = capsys.readouterr().err
    assert "--uce-target, --uce-lambda are for --method uce only" in err and err.count("\n") == 1


def test_uce_refuses_a_preserve_list_holding_the_concept(tiny_sd, tmp_path):
    from unsee.erase.run import erase
    from unsee.errors import UnseeError

    keep = tmp_path / "keep.txt"
    keep.write_text("a red square\n")
    with pytest.raises(UnseeError, match="--preserve lists what is to be removed"):
        erase(_cfg(tiny_sd, tmp_path / "z", preserve=keep))
    assert not (tmp_path / "z").exists()
