"""SDXL end to end on a tiny SDXL (two text encoders of widths 32 and 48): generate ->
labels (`unsee feedback import`) -> reward -> censor -> invert (a vector in each encoder,
reloaded by plain diffusers) -> erase (sdd, esd-u, neg, uce, --feedback, LoRA; only the
chosen parameters change) -> evaluate and attack."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pixels, read_metadata
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.models.load import load_embeddings, load_pipeline

BAD, GOOD = "a red circle", "a blue square"
WIDTHS = (32, 48)  # the tiny SDXL's two text encoders


@pytest.fixture(scope="module")
def flow(tiny_sdxl, tmp_path_factory):
    """generate -> labels -> reward -> token: the pieces every later step reads."""
    from unsee.feedback.config import FeedbackImportConfig
    from unsee.feedback.stats import run_import
    from unsee.invert.config import InvertConfig
    from unsee.invert.run import invert
    from unsee.reward.config import RewardTrainConfig
    from unsee.reward.train import train_reward

    root = tmp_path_factory.mktemp("sdxl-flow")
    prompts = root / "prompts.txt"
    prompts.write_text(f"{BAD}\n{GOOD}\n")
    folder = generate(GenerateConfig(model=str(tiny_sdxl), prompts=prompts, n=3, steps=2,
                                     out=root / "set", device="cpu"))  # fmt: skip
    # a person's labels, made elsewhere: the red circles are bad
    labels = root / "labels.csv"
    rows = [f"{r['file_name']},{'bad' if r['prompt'] == BAD else 'good'}"
            for r in read_metadata(folder)]  # fmt: skip
    labels.write_text("file_name,label\n" + "\n".join(rows) + "\n")
    run_import(FeedbackImportConfig(dir=folder, file=labels))
    reward = train_reward(RewardTrainConfig(dir=folder, out=root / "reward", ensemble=2,
                                            steps=30, cv_folds=0, device="cpu"))  # fmt: skip
    token = invert(
        InvertConfig(
            model=str(tiny_sdxl), feedback=folder, reward=reward, init="circle", token="<look>",
            num_vectors=2, steps=4, batch=2, lr=0.05, out=root / "look.safetensors",
            device="cpu",
        )
    )  # fmt: skip
    return {"folder": folder, "reward": reward, "token": token, "root": root}


def _unet(path: Path) -> dict:
    return dict(UNet2DConditionModel.from_pretrained(path / "unet").named_parameters())


def _moved(before: dict, after: dict) -> set[str]:
    return {n for n in before if not torch.equal(before[n], after[n])}


# ---------------------------------------------------------------- conditioning


def test_token_ids_encode_as_the_pipelines_encode_prompt(tiny_sdxl):
    """models/text.py's encode_ids (what invert and the attacks differentiate through) is
    diffusers' SDXL encode_prompt: both penultimate layers, the second's pooled output."""
    from unsee.models.text import encode_ids, encode_text, tokenize

    pipe = load_pipeline(str(tiny_sdxl), "cpu", "fp32")
    with torch.no_grad():
        ours = encode_ids(pipe, tokenize(pipe, [BAD]))
        theirs = encode_text(pipe, BAD)
    assert ours.hidden.shape == (1, 77, sum(WIDTHS)) and ours.pooled.shape == (1, WIDTHS[1])
    torch.testing.assert_close(ours.hidden, theirs.hidden)
    torch.testing.assert_close(ours.pooled, theirs.pooled)


def test_censor_with_the_trained_reward(tiny_sdxl, flow, tmp_path):
    from unsee.censor.config import CensorConfig
    from unsee.censor.run import censor

    out = censor(CensorConfig(model=str(tiny_sdxl), prompt=BAD, n=2, steps=2, device="cpu",
                              reward=flow["reward"], scale=4.0, out=tmp_path / "c"))  # fmt: skip
    records = read_metadata(out)
    assert all("reward_prob" in r and r["target_size"] == [32, 32] for r in records)


# ---------------------------------------------------------------- invert and --embedding


def test_invert_learns_a_vector_in_each_encoder_and_plain_diffusers_loads_them(tiny_sdxl, flow):
    token = flow["token"]
    state = load_file(token)
    assert set(state) == {"clip_l", "clip_g"}
    assert state["clip_l"].shape == (2, WIDTHS[0]) and state["clip_g"].shape == (2, WIDTHS[1])
    with safe_open(str(token), framework="pt") as f:
        assert f.metadata()["token"] == "<look>"
    info = json.loads(token.with_suffix(".json").read_text())
    assert info["keys"] == ["clip_l", "clip_g"] and info["tokens"] == ["<look>", "<look>_1"]

    # diffusers' documented way for an SDXL embedding
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, add_watermarker=False)
    pairs = [(pipe.tokenizer, pipe.text_encoder, "clip_l"),
             (pipe.tokenizer_2, pipe.text_encoder_2, "clip_g")]  # fmt: skip
    tables = [enc.get_input_embeddings().weight.detach().clone() for _, enc, _ in pairs]
    init = pipe.tokenizer("circle", add_special_tokens=False).input_ids[0]
    for (tokenizer, encoder, key), table in zip(pairs, tables, strict=True):
        assert not torch.allclose(state[key][0], table[init])  # it trained, in both
        pipe.load_textual_inversion(state[key], token="<look>", text_encoder=encoder,
                                    tokenizer=tokenizer)  # fmt: skip
    for (tokenizer, encoder, key), table in zip(pairs, tables, strict=True):
        ids = tokenizer.convert_tokens_to_ids(["<look>", "<look>_1"])
        after = encoder.get_input_embeddings().weight.detach()
        torch.testing.assert_close(after[ids], state[key])
        torch.testing.assert_close(after[: len(table)], table)
    image = pipe("a <look> on grass", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (32, 32, 3)

    # unsee's loader reads the same file into the same place, and prompts read it
    ours = load_pipeline(str(tiny_sdxl), "cpu", "fp32")
    assert load_embeddings(ours, [token]) == ["<look>"]
    for (_, encoder, _), mine in zip(pairs, [ours.text_encoder, ours.text_encoder_2], strict=True):
        torch.testing.assert_close(
            mine.get_input_embeddings().weight, encoder.get_input_embeddings().weight
        )


def test_embedding_works_in_generate_and_wrong_layouts_are_refused(
    tiny_sdxl, tiny_sd, flow, tmp_path
):
    kw = dict(model=str(tiny_sdxl), steps=2, device="cpu")
    plain = generate(GenerateConfig(prompt="a <look>", out=tmp_path / "plain", **kw))
    used = generate(GenerateConfig(prompt="a <look>", embedding=[flow["token"]],
                                   out=tmp_path / "used", **kw))  # fmt: skip
    assert not np.array_equal(*(pixels(o)["images/000000.png"] for o in (plain, used)))
    assert read_metadata(used)[0]["embedding"] == [str(flow["token"])]
    # a Stable Diffusion token (one encoder) on SDXL, an SDXL token on Stable Diffusion
    sd_token = tmp_path / "sd.safetensors"
    save_file({"<x>": torch.zeros(1, 32)}, sd_token)
    with pytest.raises(UnseeError, match=r"one text encoder.*SDXL token has a vector for each"):
        generate(GenerateConfig(prompt="x", embedding=[sd_token], out=tmp_path / "a", **kw))
    with pytest.raises(UnseeError, match=r"is an SDXL token.*one text encoder"):
        load_embeddings(StableDiffusionPipeline.from_pretrained(tiny_sd), [flow["token"]])
    # a file without metadata (as embedding sites publish them): the token is its name
    bare = tmp_path / "shiny.safetensors"
    save_file(load_file(flow["token"]), bare)
    assert load_embeddings(load_pipeline(str(tiny_sdxl), "cpu", "fp32"), [bare]) == ["shiny"]


# ---------------------------------------------------------------- erase


def _erase_cfg(model, out, **kw):
    from unsee.erase.config import EraseConfig

    base = dict(model=str(model), out=out, concept=[BAD], iterations=3, batch=2, sample_steps=3,
                lr=1e-3, checkpoint_every=0, device="cpu", seed=1, ema=0.0)  # fmt: skip
    return EraseConfig(**{**base, **kw})


def test_sdd_on_text_and_token_changes_only_cross_attention(tiny_sdxl, flow, tmp_path):
    from unsee.erase.run import erase

    out = erase(_erase_cfg(tiny_sdxl, tmp_path / "sdd", embedding=[flow["token"]]))
    info = json.loads((out / "erase.json").read_text())
    assert info["concepts"] == [BAD, "<look>"] and info["method"] == "sdd"
    before, after = _unet(tiny_sdxl), _unet(out)
    moved = _moved(before, after)
    assert moved and all(".attn2." in n for n in moved)  # the rest bit for bit
    # a plain diffusers SDXL pipeline, its text encoders the original ones (no token)
    pipe = StableDiffusionXLPipeline.from_pretrained(out)
    assert "<look>" not in pipe.tokenizer.get_vocab()
    assert "<look>" not in pipe.tokenizer_2.get_vocab()
    original = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    for name in ("text_encoder", "text_encoder_2"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(original, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert "StableDiffusionXLPipeline.from_pretrained" in (out / "README.md").read_text()


def test_gradient_checkpointing_gives_the_same_erase(tiny_sdxl, tmp_path):
    from unsee.erase.run import erase

    plain = _unet(erase(_erase_cfg(tiny_sdxl, tmp_path / "a", iterations=2)))
    saved = _unet(erase(_erase_cfg(tiny_sdxl, tmp_path / "b", iterations=2,
                                   gradient_checkpointing=True)))  # fmt: skip
    for n, p in plain.items():
        torch.testing.assert_close(saved[n], p, rtol=1e-5, atol=1e-6, msg=n)


def test_esd_x_esd_u_and_neg_train_their_own_parameters(tiny_sdxl, tmp_path):
    from unsee.erase.run import erase

    before = _unet(tiny_sdxl)
    esd_x = _moved(before, _unet(erase(_erase_cfg(tiny_sdxl, tmp_path / "x", method="esd-x",
                                                  iterations=2))))  # fmt: skip
    assert esd_x and all(".attn2." in n for n in esd_x)
    esd_u = _moved(before, _unet(erase(_erase_cfg(tiny_sdxl, tmp_path / "u", method="esd-u",
                                                  iterations=2))))  # fmt: skip
    assert esd_u and not any(".attn2." in n for n in esd_u)
    # the added (pooled text and size) embedding trains too: it is outside cross-attention
    assert any(n.startswith("add_embedding.") for n in esd_u)
    anchors = tmp_path / "anchors.txt"
    anchors.write_text(f"{BAD} on grass\n{BAD} at night\n")
    keep = tmp_path / "keep.txt"
    keep.write_text(f"{GOOD}\n")
    neg = erase(_erase_cfg(tiny_sdxl, tmp_path / "neg", method="neg", anchors=anchors,
                           preserve=keep, strip_concept=True, iterations=2))  # fmt: skip
    moved = _moved(before, _unet(neg))
    assert moved and all(".attn2." in n for n in moved)


@pytest.mark.parametrize("method,checkpointing", [("sdd", False), ("esd-x", True)])
def test_the_bf16_path_passes_the_added_conditioning(
    tiny_sdxl, tmp_path, monkeypatch, method, checkpointing, fresh_accelerator
):
    """erase/precision.py's half student and half calls (functional_call), forced on the
    CPU, with and without gradient checkpointing: SDXL's pooled text and time ids reach
    every U-Net call, the frozen weights are saved as loaded."""
    import unsee.erase.run as run

    monkeypatch.setattr(run, "_mixed_precision", lambda cfg: "bf16")
    used = []
    real = run.half_student
    monkeypatch.setattr(run, "half_student", lambda *a: used.append(a[-1]) or real(*a))
    out = run.erase(_erase_cfg(tiny_sdxl, tmp_path / method, method=method, reuse=1,
                               gradient_checkpointing=checkpointing))  # fmt: skip
    assert used == [checkpointing]
    after = _unet(out)
    moved = _moved(_unet(tiny_sdxl), after)
    assert moved and all(".attn2." in n for n in moved)
    assert all(p.dtype == torch.float32 for p in after.values())


def test_lora_erase_loads_in_plain_diffusers_sdxl(tiny_sdxl, tmp_path):
    from unsee.erase.run import erase

    out = erase(_erase_cfg(tiny_sdxl, tmp_path / "lora", save="lora", iterations=2))
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, add_watermarker=False)

    def image():
        return pipe(BAD, num_inference_steps=2, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images  # fmt: skip

    base = image()
    pipe.load_lora_weights(out)
    assert not (base == image()).all()
    assert "on the StableDiffusionXLPipeline" in (out / "README.md").read_text()
    # and through unsee's own --lora
    gen = dict(model=str(tiny_sdxl), prompt=BAD, steps=2, device="cpu")
    a = pixels(generate(GenerateConfig(out=tmp_path / "a", **gen)))
    b = pixels(generate(GenerateConfig(out=tmp_path / "b", lora=out, **gen)))
    assert not np.array_equal(a["images/000000.png"], b["images/000000.png"])


def test_uce_edits_the_keys_and_values_that_read_both_encoders(tiny_sdxl, flow, tmp_path):
    from unsee.erase.config import EraseConfig
    from unsee.erase.run import _n_tokens, encode_texts, erase
    from unsee.erase.uce import edited_rows

    out = erase(EraseConfig(model=str(tiny_sdxl), out=tmp_path / "uce", method="uce",
                            concept=[BAD], embedding=[flow["token"]], device="cpu"))  # fmt: skip
    before, after = _unet(tiny_sdxl), _unet(out)
    kv = {n for n in before if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))}
    assert kv and _moved(before, after) == kv
    assert all(before[n].shape[1] == sum(WIDTHS) for n in kv)  # the concatenated tokens
    info = json.loads((out / "erase.json").read_text())
    assert info["concepts"] == [BAD, "<look>"]
    # the concept's edited token vectors give (nearer) the empty prompt's keys and values
    pipe = load_pipeline(str(tiny_sdxl), "cpu", "fp32")
    cs, ts = encode_texts(pipe, [BAD, ""], "cpu")
    c, c_star = edited_rows(cs, _n_tokens(pipe, BAD), ts, _n_tokens(pipe, ""))
    for name in kv:
        w_old, w_new = before[name].detach(), after[name].detach()
        v_star = c_star @ w_old.T
        assert (c @ w_new.T - v_star).norm() < 0.6 * (c @ w_old.T - v_star).norm(), name
    assert "<look>" not in StableDiffusionXLPipeline.from_pretrained(out).tokenizer_2.get_vocab()


def test_erase_from_feedback_on_sdxl(tiny_sdxl, flow, tmp_path):
    from unsee.erase.run import erase

    out = erase(_erase_cfg(tiny_sdxl, tmp_path / "fb", concept=["red"], feedback=flow["folder"],
                           reward=flow["reward"], init="circle", invert_steps=2))  # fmt: skip
    plan = json.loads((out / "feedback" / "plan.json").read_text())
    assert plan["method"] == "neg" and plan["strip_concept"] is True
    assert set(load_file(out / "feedback" / "token.safetensors")) == {"clip_l", "clip_g"}
    assert json.loads((out / "erase.json").read_text())["concepts"] == ["red", "<flagged>"]
    moved = _moved(_unet(tiny_sdxl), _unet(out))
    assert moved and all(".attn2." in n for n in moved)


# ---------------------------------------------------------------- evaluate and attack


def test_evaluate_an_erased_sdxl_against_the_original(tiny_sdxl, flow, tmp_path):
    from unsee.erase.run import erase
    from unsee.evaluate.config import EvaluateConfig
    from unsee.evaluate.run import evaluate

    erased = erase(_erase_cfg(tiny_sdxl, tmp_path / "erased", iterations=2))
    res = evaluate(EvaluateConfig(model=str(erased), reference_model=str(tiny_sdxl),
                                  suite=["target"], n=2, steps=2, bootstrap=20, device="cpu",
                                  out=tmp_path / "eval"))  # fmt: skip
    target = res["suites"]["target"]
    for metric in ("concept_rate", "prompt_accuracy_shape", "clip_score", "same_seed_distance"):
        assert target[metric]["low"] <= target[metric]["mean"] <= target[metric]["high"], metric
    made = read_metadata(tmp_path / "eval" / "target" / "images")
    assert made[0]["original_size"] == [32, 32]
    # a learned token as the negative prompt (the NEG baseline) on SDXL
    neg = evaluate(EvaluateConfig(model=str(tiny_sdxl), suite=["target"], n=2, steps=2,
                                  bootstrap=20, device="cpu", embedding=[flow["token"]],
                                  negative_prompt="<look>", out=tmp_path / "neg"))  # fmt: skip
    assert "same_seed_distance" in neg["suites"]["target"]


def _fake_detector(monkeypatch, rule):
    import unsee.attack.run as attack_run

    detect = lambda images: np.array([rule(im) for im in images], dtype=bool)  # noqa: E731
    monkeypatch.setattr(attack_run, "make_detector", lambda *a: (detect, "a fake detector"))


def test_prefix_and_inversion_attacks_on_sdxl(tiny_sdxl, tmp_path, monkeypatch):
    import unsee.attack.run as attack_run
    from unsee.attack.config import AttackConfig

    _fake_detector(monkeypatch, lambda im: False)
    base = dict(model=str(tiny_sdxl), reference_model=str(tiny_sdxl), device="cpu", n=2, steps=2,
                batch_size=2)  # fmt: skip
    res = attack_run.attack(AttackConfig(out=tmp_path / "prefix", iterations=2, check_every=1,
                                         attack_batch=2, **base))  # fmt: skip
    assert res["asr"] == 0 and res["n"] == 2
    records = read_lines(tmp_path / "prefix" / "prompts.jsonl")
    assert all(r["loss_last"] > 0 and r["hard_prompt"].endswith(r["prompt"]) for r in records)

    cfg = AttackConfig(out=tmp_path / "inv", method="inversion", inversion_steps=2,
                       inversion_batch=2, **base)  # fmt: skip
    res = attack_run.attack(cfg)
    token = tmp_path / "inv" / "learned_embeds.safetensors"
    state = load_file(token)
    assert {k: v.shape for k, v in state.items()} == {
        "clip_l": (1, WIDTHS[0]), "clip_g": (1, WIDTHS[1])
    }  # fmt: skip
    # a second sitting reads the token back (models.load.load_embeddings)
    again = attack_run.attack(cfg)
    assert again["rate"] == res["rate"] and again["token_file"] == str(token)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_prefix_embeddings_stand_for_typed_tokens_in_both_encoders(tiny_sdxl):
    from unsee.attack.prefix import encode_cond_with_prefix, prompt_ids
    from unsee.models.text import encode_ids, text_encoders

    pipe = load_pipeline(str(tiny_sdxl), "cpu", "fp32")
    words = pipe.tokenizer("circle grass", add_special_tokens=False).input_ids
    ids = [prompt_ids(t, [BAD], 2) for t, _ in text_encoders(pipe)]
    prefixes = [e.get_input_embeddings().weight[words][None] for _, e in text_encoders(pipe)]
    with torch.no_grad():
        spliced = encode_cond_with_prefix(pipe, ids, prefixes)
        for x in ids:
            x[0, 1:3] = torch.tensor(words)
        typed = encode_ids(pipe, ids)
    torch.testing.assert_close(spliced.hidden, typed.hidden)
    torch.testing.assert_close(spliced.pooled, typed.pooled)
