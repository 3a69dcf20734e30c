import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import unsee.attack.run as attack_run
from unsee.attack.config import AttackConfig
from unsee.attack.prefix import (
    Case,
    ascending_timesteps,
    attack_batch,
    attack_vocabulary,
    concept_tokens,
    denoising_loss,
    encode_with_prefix,
    names_concept,
    prefix_vocabulary,
    project_simplex,
    prompt_ids,
    straight_through_one_hot,
)
from unsee.errors import UnseeError


def test_simplex_projection_on_known_inputs():
    v = torch.tensor(
        [
            [0.5, 0.5, 0.0],  # on the simplex already: unchanged
            [2.0, 0.0, 0.0],  # a vertex beyond: back to it
            [0.4, 0.3, 0.1],  # inside the plane's shortfall: 0.2 / 3 added to each
            [1.0, 1.0, -1.0],  # the negative one drops out, the rest share the mass
            [0.0, 0.0, 0.0],  # the centre
        ]
    )
    want = torch.tensor(
        [
            [0.5, 0.5, 0.0],
            [1.0, 0.0, 0.0],
            [0.4 + 0.2 / 3, 0.3 + 0.2 / 3, 0.1 + 0.2 / 3],
            [0.5, 0.5, 0.0],
            [1 / 3, 1 / 3, 1 / 3],
        ]
    )
    torch.testing.assert_close(project_simplex(v), want)
    # any input lands on the simplex, and the projection is idempotent
    x = torch.randn(4, 2, 1000, generator=torch.Generator().manual_seed(0))
    w = project_simplex(x)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 2))
    torch.testing.assert_close(project_simplex(w), w)
    # it is the nearest point: no other point of the simplex is closer (random ones here)
    others = project_simplex(torch.rand(50, 1000, generator=torch.Generator().manual_seed(1)))
    assert ((others - x[0, 0]).norm(dim=-1) >= (w[0, 0] - x[0, 0]).norm()).all()


def test_straight_through_sample_is_one_hot_forward_and_soft_backward():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], requires_grad=True)
    s = straight_through_one_hot(p)
    assert torch.equal(s, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))  # exactly
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (s * w).sum().backward()
    assert torch.equal(p.grad, w)  # the gradient passes straight through to p
    # times a table: the argmax token's row, exactly
    table = torch.randn(3, 4)
    assert torch.equal(s @ table, table[[1, 0]])


def test_timesteps_ascend_over_the_schedule():
    schedule = torch.tensor([961, 921, 881, 41, 1])
    assert ascending_timesteps(schedule, 5).tolist() == [1, 41, 881, 921, 961]
    twice = [1, 1, 41, 41, 881, 881, 921, 921, 961, 961]
    assert ascending_timesteps(schedule, 10).tolist() == twice


def test_loss_sums_per_prompt_means_of_active_prompts():
    pred = torch.zeros(3, 1, 2, 2)
    target = torch.stack([torch.full((1, 2, 2), float(v)) for v in (1, 2, 3)])
    assert denoising_loss(pred, target, torch.tensor([1.0, 1.0, 0.0])).item() == 5.0


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sd):
    from unsee.models.load import load_pipeline

    return load_pipeline(str(tiny_sd), "cpu", "fp32")


def test_prefix_splices_in_front_of_the_prompt(tiny_pipe):
    tok, enc = tiny_pipe.tokenizer, tiny_pipe.text_encoder
    ids = prompt_ids(tok, ["a red circle"], 2)
    plain = tok(["a red circle"], padding="max_length", max_length=77, return_tensors="pt")
    assert ids[0, 0] == tok.bos_token_id and torch.equal(ids[0, 3:8], plain.input_ids[0, 1:6])
    # the prefix's rows stand in for the slots: the same as typing those tokens
    words = tok("circle grass", add_special_tokens=False).input_ids
    table = enc.get_input_embeddings().weight
    with torch.no_grad():
        spliced = encode_with_prefix(enc, ids, table[words][None])
        ids[0, 1:3] = torch.tensor(words)
        typed = enc(ids)[0]
    torch.testing.assert_close(spliced, typed)
    vocab = attack_vocabulary(tok)
    assert tok.bos_token_id not in vocab and tok.eos_token_id not in vocab


def test_attack_loss_decreases_on_a_tiny_model(tiny_pipe):
    """The attack's own loop on one prompt at a fixed timestep and noise: the straight-through
    steps find prefixes that denoise the target better than the first one."""
    pipe = tiny_pipe
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, 4, 16, 16, generator=g)
    eps = torch.randn(1, 4, 16, 16, generator=g)
    t = torch.tensor(500)
    z_t = pipe.scheduler.add_noise(z0, eps, t)
    vocab = attack_vocabulary(pipe.tokenizer)
    table = pipe.text_encoder.get_input_embeddings().weight.detach()[vocab]
    ids = prompt_ids(pipe.tokenizer, ["a red circle"], 3)
    p = torch.full((1, 3, len(vocab)), 1 / len(vocab))
    p = (p + 1e-3 * torch.rand(p.shape, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([p], lr=0.01, weight_decay=0.1)
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    losses = []
    for _ in range(20):
        hidden = encode_with_prefix(pipe.text_encoder, ids, straight_through_one_hot(p) @ table)
        loss = denoising_loss(pipe.unet(z_t, t, encoder_hidden_states=hidden).sample, eps,
                              torch.ones(1))  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            p.copy_(project_simplex(p))
        losses.append(loss.item())
    assert min(losses[1:]) < losses[0]


def test_the_attack_never_names_the_concept(tiny_pipe, tmp_path):
    """The slots never take the concept's name or its BPE pieces (in any casing), and a hard
    prompt that names it anyway never counts as a success."""
    tok = tiny_pipe.tokenizer
    pieces = tok.convert_tokens_to_ids(["van", "mond</w>"])
    assert set(pieces) <= concept_tokens(tok, "Vanmond")
    for vocabulary in ("all", "world"):
        vocab = prefix_vocabulary(tok, vocabulary, "Vanmond").tolist()
        assert not set(pieces) & set(vocab)
        assert not any("vanmond" in t.lower() for t in tok.convert_ids_to_tokens(vocab))
    world = prefix_vocabulary(tok, "world", "Vanmond").tolist()
    assert 20 < len(world) < 200 and tok.convert_tokens_to_ids("starry</w>") in world
    for text in ("VanMond a red circle", "a van mond", "van-MOND", "xvanmondx"):
        assert names_concept(tok, text, "Vanmond"), text
    for text in ("a starry night", "a van on grass", "mond"):
        assert not names_concept(tok, text, "Vanmond"), text

    # a slot that can only complete the name (van + "mond ..."), a detector that always
    # fires: no success
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import Sampler

    gen = GenerateConfig(model="tiny", device="cpu", out=tmp_path, steps=2, batch_size=4)
    sampler = Sampler(gen, None, pipe=tiny_pipe)
    case = Case(0, "a red circle", 0, 7.5, torch.zeros(sampler.shape))
    calls = []

    def always(images):
        calls.append(len(images))
        return np.ones(len(images), dtype=bool)

    half = Case(0, "mond on grass", 0, 7.5, torch.zeros(sampler.shape))
    [named] = attack_batch(
        sampler, [half], always, k=1, iterations=4, check_every=1, lr=0.01, weight_decay=0.1,
        steps=2, vocab=torch.tensor(pieces[:1]), concept="Vanmond",
    )  # fmt: skip
    assert calls and not named.success and names_concept(tok, named.hard_prompt, "Vanmond")
    # without the concept the same detector's call stands; one token: the hard prompt never
    # changes, so it is sampled once, not at every check
    calls.clear()
    [found] = attack_batch(
        sampler, [case], always, k=2, iterations=4, check_every=1, lr=0.01, weight_decay=0.1,
        steps=2, vocab=torch.tensor(pieces[:1]),
    )  # fmt: skip
    assert found.success and found.step == 1 and calls == [1]
    calls.clear()
    never = lambda images: calls.append(len(images)) or np.zeros(len(images), bool)  # noqa: E731
    attack_batch(
        sampler, [case], never, k=2, iterations=4, check_every=1, lr=0.01, weight_decay=0.1,
        steps=2, vocab=torch.tensor(pieces[:1]),
    )  # fmt: skip
    assert calls == [1]


# the command, with a detector injected -----------------------------------------------------


def _fake_detector(rule):
    """A detector that fires by `rule(image)`; counts its calls."""
    calls = []

    def detect(images):
        calls.append(len(images))
        return np.array([rule(im) for im in images], dtype=bool)

    return detect, calls


def _config(tiny_sd, out, **kw):
    base = dict(
        model=str(tiny_sd), reference_model=str(tiny_sd), device="cpu", out=out, n=3, steps=2,
        iterations=4, check_every=2, attack_batch=2, batch_size=4,
    )  # fmt: skip
    return AttackConfig(**(base | kw))


def _use(monkeypatch, detect):
    monkeypatch.setattr(attack_run, "make_detector", lambda *a: (detect, "a fake detector"))


def test_success_is_the_detectors_call_not_the_loss(tiny_sd, tmp_path, monkeypatch):
    never, calls = _fake_detector(lambda im: False)
    _use(monkeypatch, never)
    res = attack_run.attack(_config(tiny_sd, tmp_path / "never"))
    assert res["asr"] == 0 and res["successes_before"] == 0 and calls
    text = (tmp_path / "never" / "prompts.jsonl").read_text()
    records = [json.loads(x) for x in text.splitlines()]
    assert all(not r["success"] and r["step"] is None for r in records)
    assert all(r["loss_last"] < 10 for r in records)  # whatever the loss, no success

    always, _ = _fake_detector(lambda im: True)
    _use(monkeypatch, always)
    res = attack_run.attack(_config(tiny_sd, tmp_path / "always"))
    assert res["asr"] == 1 and res["successes_before"] == 3 and res["successes_attack"] == 0


def test_found_prompt_replays_to_the_same_image(tiny_sd, tmp_path, monkeypatch):
    # fires on the hard prompts only: on images unlike the plain prompts' own
    plain = {}

    def rule(im):
        key = im.tobytes()
        if len(plain) < 3:
            plain[key] = True
            return False
        return key not in plain

    detect, _ = _fake_detector(rule)
    _use(monkeypatch, detect)
    out = tmp_path / "a"
    res = attack_run.attack(_config(tiny_sd, out))
    assert res["successes_attack"] >= 1
    found = [json.loads(x) for x in (out / "prompts.jsonl").read_text().splitlines()]
    r = next(r for r in found if r["success"])
    assert r["step"] == 2 and r["hard_prompt"].endswith(r["prompt"])
    args = [
        sys.executable, "-m", "unsee", "generate", "--model", str(tiny_sd), "--device", "cpu",
        "--steps", "2", "--guidance", str(r["guidance"]), "--seed", str(r["seed"]),
        "--prompt", r["hard_prompt"], "--out", str(tmp_path / "replay"),
    ]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True)
    replayed = np.asarray(Image.open(tmp_path / "replay" / "images" / "000000.png"))
    assert np.array_equal(replayed, np.asarray(Image.open(out / r["file_name"])))
    assert "--seed {seed} --prompt {prompt}" in res["replay"]


def test_a_killed_run_resumes_to_the_same_results(tiny_sd, tmp_path, monkeypatch):
    rule = lambda im: im.mean() > 127.5  # noqa: E731
    detect, _ = _fake_detector(rule)
    _use(monkeypatch, detect)
    whole = attack_run.attack(_config(tiny_sd, tmp_path / "whole", n=5))

    # kill after the first attacked prompt's line is written
    real_append = attack_run.imageset.append_line
    written = []

    def dying_append(path, record):
        real_append(path, record)
        if path.name == "prompts.jsonl" and record.get("success_before") is False:
            written.append(record)
            raise KeyboardInterrupt

    monkeypatch.setattr(attack_run.imageset, "append_line", dying_append)
    with pytest.raises(KeyboardInterrupt):
        attack_run.attack(_config(tiny_sd, tmp_path / "killed", n=5))
    monkeypatch.setattr(attack_run.imageset, "append_line", real_append)
    assert written and not (tmp_path / "killed" / "results.json").exists()
    resumed = attack_run.attack(_config(tiny_sd, tmp_path / "killed", n=5))

    def lines(folder):
        records = [json.loads(x) for x in (folder / "prompts.jsonl").read_text().splitlines()]
        return sorted(records, key=lambda r: r["index"])

    assert lines(tmp_path / "killed") == lines(tmp_path / "whole")
    for key in ("asr", "asr_before", "successes_before", "successes_attack"):
        assert resumed[key] == whole[key]
    # another setting in the same folder is refused
    with pytest.raises(UnseeError, match="other settings"):
        attack_run.attack(_config(tiny_sd, tmp_path / "killed", n=5, lr=0.5))


def test_bad_input_is_one_clear_error(tiny_sd, tmp_path):
    with pytest.raises(UnseeError, match="--prompts"):
        _config(tiny_sd, tmp_path, method="replay")
    with pytest.raises(UnseeError, match="--concept"):
        _config(tiny_sd, tmp_path, concept="Picasso")
    with pytest.raises(UnseeError, match="at least 1"):
        _config(tiny_sd, tmp_path, iterations=0)
    r = subprocess.run(
        [sys.executable, "-m", "unsee", "attack", "--out", str(tmp_path), "--n", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().startswith("unsee: error:")


def test_bench_gpu_path_runs_on_the_cpu_with_a_tiny_pipeline():
    """`unsee bench attack`'s GPU figure, built the same way on the CPU with a tiny model."""
    from unsee.bench.attack import random_weights_seconds
    from unsee.models.tiny import tiny_sd_pipeline

    seconds = random_weights_seconds(
        "cpu", 2, 32, build=tiny_sd_pipeline, settings={"iterations": 2, "check_every": 1}
    )
    assert seconds > 0


def test_an_inference_intervention_learns_the_same_inversion_token(
    tiny_sd, tiny_pipe, tmp_path, monkeypatch
):
    # why the method table gives rows on the original weights the original row's token
    # (bench.table.share_inversion_token): the intervention changes sampling, not learning
    from safetensors.torch import load_file

    never, _ = _fake_detector(lambda im: False)
    _use(monkeypatch, never)
    kw = dict(method="inversion", inversion_steps=3, inversion_batch=2)
    tokens = {}
    for name, extra in (("plain", {}), ("negative", {"negative_prompt": "red"})):
        attack_run.attack(_config(tiny_sd, tmp_path / name, **kw, **extra))
        tokens[name] = load_file(tmp_path / name / "learned_embeds.safetensors")
    table = tiny_pipe.text_encoder.get_input_embeddings().weight
    start = table[tiny_pipe.tokenizer("painting", add_special_tokens=False).input_ids[0]]
    assert tokens["plain"] and tokens["plain"].keys() == tokens["negative"].keys()
    for key, vector in tokens["plain"].items():
        assert torch.equal(vector, tokens["negative"][key]), key
        assert not torch.allclose(vector.flatten(), start.detach().float()), key  # it learned


def test_a_model_erased_from_minisd_is_attacked_with_minisds_settings(tmp_path):
    # the table's erased rows were once attacked with the paper's settings (every CLIP
    # token, 40 steps, 1000 inversion steps) while minisd's own rows had minisd's
    from unsee.attack.config import PAPER_DEFAULTS, WORLD_DEFAULTS, attack_defaults
    from unsee.erase.config import erase_defaults

    once, twice, other, loop = (tmp_path / n for n in ("once", "twice", "other", "loop"))
    for folder, made_from in ((once, "minisd"), (twice, str(once)), (other, "org/sd"),
                              (loop, str(tmp_path / "loop"))):  # fmt: skip
        folder.mkdir()
        (folder / "erase.json").write_text(json.dumps({"settings": {"model": made_from}}))
    for model in ("minisd", str(once), str(twice)):
        assert attack_defaults(model) == WORLD_DEFAULTS, model
        assert erase_defaults(model)["iterations"] == erase_defaults("minisd")["iterations"]
    for model in (str(other), str(loop), str(tmp_path), "org/sd"):
        assert attack_defaults(model) == PAPER_DEFAULTS, model
    cfg = AttackConfig(model=str(twice), out=tmp_path / "a")
    assert cfg.setting("vocabulary") == "world" and cfg.setting("iterations") == 60
