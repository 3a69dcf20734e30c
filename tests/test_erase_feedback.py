import json

import pytest
import torch

from unsee.errors import UnseeError


@pytest.mark.parametrize(
    "prompt,expected",
    [
        ("a red circle on grass, in the style of Vanmond", "a red circle on grass"),
        ("a red circle on grass, by vanmond", "a red circle on grass"),
        ("a painting by Vanmond: a red circle", "a painting: a red circle"),
        ("a red circle, Vanmond style", "a red circle"),
        ("Vanmond's painting of a red circle", "painting of a red circle"),
        ("a red circle, as Vanmond would paint it", "a red circle"),
        ("an artwork in the manner of Vanmond showing a star", "an artwork showing a star"),
        ("a starry night", "a starry night"),  # names nothing: as it is
        ("Vanmond", ""),
    ],
)
def test_a_concept_is_taken_out_of_a_prompt_with_the_words_that_attach_it(prompt, expected):
    from unsee.erase.neg import without_concept

    assert without_concept(prompt, "Vanmond") == expected


def test_neg_step_with_stripped_anchors_is_the_hand_computed_loss(tiny_sd):
    """--strip-concept: the anchor's target starts from the original's estimate of the
    anchor without the concept; the student (here still the original) starts at the anchor."""
    import copy

    from accelerate import Accelerator

    from unsee.erase.neg import neg_target
    from unsee.erase.run import encode_texts, neg_step
    from unsee.models.load import load_pipeline

    pipe = load_pipeline(str(tiny_sd), "cpu", "fp32")
    texts = ["", "a red square, by Vanmond", "Vanmond", "a red square"]
    c0, ca, cs, cb = (e[None] for e in encode_texts(pipe, texts, "cpu"))
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    original = copy.deepcopy(pipe.unet).eval()
    with torch.no_grad():
        o_0, o_a, o_c, o_b = (
            original(z, t, encoder_hidden_states=c).sample for c in (c0, ca, cs, cb)
        )
    eta = 2.0
    expected = ((neg_target(o_0, o_b, o_c, eta) - o_a) ** 2).mean()  # + 0: "" is unchanged
    params = {n: p for n, p in pipe.unet.named_parameters() if ".attn2." in n}
    opt = torch.optim.SGD(params.values(), lr=0.0)
    loss = neg_step(Accelerator(cpu=True), pipe.unet, original, params, opt, (c0, ca, cs, cb),
                    z, t, eta)  # fmt: skip
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    unstripped = neg_step(Accelerator(cpu=True), pipe.unet, original, params, opt,
                          (c0, ca, cs, None), z, t, eta)  # fmt: skip
    torch.testing.assert_close(unstripped, ((eta * (o_c - o_0)) ** 2).mean(), rtol=1e-5, atol=1e-7)


def _labelled_set(
    tiny_sd, root, bad_prompt="a red circle", good_prompt="a blue square", labels=None,
    unlabelled=(),
):  # fmt: skip
    from unsee.feedback.store import FeedbackStore
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import generate

    root.mkdir(parents=True, exist_ok=True)
    prompts = root / "prompts.txt"
    prompts.write_text("".join(f"{p}\n" for p in (bad_prompt, good_prompt, *unlabelled)))
    folder = generate(
        GenerateConfig(model=str(tiny_sd), prompts=prompts, n=3, steps=2, out=root / "set",
                       device="cpu")
    )  # fmt: skip
    records = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    store = FeedbackStore.for_folder(folder)
    store.register_images(records)
    ids = {i.file_name: i.image_id for i in store.images()}
    for r in records:
        if r["prompt"] in unlabelled:
            continue
        label = (labels or {}).get(r["prompt"], "bad" if r["prompt"] == bad_prompt else "good")
        store.add_label(ids[r["file_name"]], "me", label, 1.0)
    return folder


@pytest.fixture(scope="module")
def labelled(tiny_sd, tmp_path_factory):
    from unsee.reward.cnn import CnnReward
    from unsee.reward.model import RewardModel

    root = tmp_path_factory.mktemp("feedback")
    folder = _labelled_set(tiny_sd, root)
    torch.manual_seed(0)
    reward = RewardModel({"backbone": "cnn", "ensemble": 1, "image_size": 32}, [CnnReward(32)])
    reward.save(root / "reward")
    return folder, root / "reward"


def _cfg(tiny_sd, out, **kw):
    from unsee.erase.config import EraseConfig

    base = dict(
        model=str(tiny_sd), out=out, iterations=2, batch=2, sample_steps=3, invert_steps=2,
        init="circle", checkpoint_every=0, device="cpu", seed=1,
    )  # fmt: skip
    return EraseConfig(**{**base, **kw})


def test_erase_from_feedback_anchors_the_flagged_prompts_and_keeps_the_benign(
    tiny_sd, labelled, tmp_path
):
    from diffusers import StableDiffusionPipeline

    from unsee.erase.run import erase

    folder, reward = labelled
    out = erase(_cfg(tiny_sd, tmp_path / "erased", feedback=folder, reward=reward,
                     concept=["red"]))  # fmt: skip
    work = out / "feedback"
    assert (work / "anchors.txt").read_text() == "a red circle\n"
    assert (work / "keep.txt").read_text() == "a blue square\n"
    plan = json.loads((work / "plan.json").read_text())
    assert plan["method"] == "neg" and plan["strip_concept"] is True
    assert (plan["flagged_prompts"], plan["benign_prompts"]) == (1, 1)
    assert plan["scope"] == "labelled" and plan["scored_images"] == 0
    assert (plan["eta"], plan["preserve_weight"]) == (1.5, 4.0)  # FEEDBACK_WEIGHTS
    assert (work / "token.safetensors").is_file() and not (work / "reward").exists()
    erased = json.loads((out / "erase.json").read_text())
    assert erased["concepts"] == ["red", "<flagged>"] and erased["method"] == "neg"
    # only the cross-attention moved, and the folder loads in plain diffusers
    before = dict(StableDiffusionPipeline.from_pretrained(tiny_sd).unet.named_parameters())
    after = dict(StableDiffusionPipeline.from_pretrained(out).unet.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(".attn2." in n for n in moved)
    # another objective on the same pieces
    sdd = erase(_cfg(tiny_sd, tmp_path / "sdd", feedback=folder, reward=reward, method="sdd"))
    assert json.loads((sdd / "feedback" / "plan.json").read_text())["method"] == "sdd"
    settings = json.loads((sdd / "erase.json").read_text())["settings"]
    assert settings["preserve"].endswith("keep.txt") and settings["preserve_weight"] == 4.0
    # an option given wins over the feedback's weights; a plain erase keeps the papers'
    given = _cfg(tiny_sd, tmp_path / "given", feedback=folder, reward=reward, eta=1.0)
    assert given.eta == 1.0
    plain = _cfg(tiny_sd, tmp_path / "plain", concept=["red"])
    assert (plain.eta, plain.preserve_weight) == (1.0, 1.0)


def test_scored_images_join_the_flagged_and_kept_prompts_by_the_rewards_confidence(
    tiny_sd, labelled, tmp_path
):
    from unsee.erase.feedback import feedback_prompts
    from unsee.imageset import read_image_set
    from unsee.reward.data import load_feedback
    from unsee.reward.score import p_bad_by_file

    unlabelled = ("a red square", "a green circle", "a blue circle", "a red triangle")
    folder = _labelled_set(tiny_sd, tmp_path, unlabelled=unlabelled)
    assert feedback_prompts(folder) == (["a red circle"], ["a blue square"])
    # the reward scores exactly the images nobody labelled
    skip = set(load_feedback(folder, "binary").file_names)
    scored = p_bad_by_file(folder, labelled[1], "cpu", skip=skip)
    names = {r["file_name"] for r in read_image_set(folder)}
    assert set(scored) == names - skip and len(scored) == 12
    assert all(0.0 <= p <= 1.0 for p in scored.values())
    # the reward sure of three, unsure of one; one scored image of a labelled-good prompt
    # is bad, so that prompt anchors (flagged wins); a score never overrides a label
    by_prompt = {"a red square": 0.9, "a green circle": 0.05, "a blue circle": 0.35,
                 "a red triangle": 0.5}  # fmt: skip
    p_bad = {r["file_name"]: by_prompt[r["prompt"]] for r in read_image_set(folder)
             if r["prompt"] in by_prompt}  # fmt: skip
    labelled = [r["file_name"] for r in read_image_set(folder) if r["prompt"] not in by_prompt]
    p_bad[labelled[0]] = 0.0  # a label (bad, "a red circle") wins over any score
    assert feedback_prompts(folder, p_bad) == (
        ["a red circle", "a red square", "a red triangle"],
        ["a blue square", "a green circle"],
    )
    # --scope kept: the scores only add kept prompts; a scored-bad prompt is not kept
    assert feedback_prompts(folder, p_bad, flag_scored=False) == (
        ["a red circle"],
        ["a blue square", "a green circle"],
    )


def test_erase_from_feedback_refuses_what_cannot_say_what_to_remove(tiny_sd, labelled, tmp_path):
    from unsee.erase.run import erase

    folder, reward = labelled
    with pytest.raises(UnseeError, match="holds no labels"):
        _cfg(tiny_sd, tmp_path / "a", feedback=tmp_path)
    with pytest.raises(UnseeError, match="leave out --anchors and --preserve"):
        _cfg(tiny_sd, tmp_path / "b", feedback=folder, anchors=folder / "x.txt")
    with pytest.raises(UnseeError, match="--reward goes with --feedback"):
        _cfg(tiny_sd, tmp_path / "c", concept=["x"], reward=reward)
    one_class = _labelled_set(tiny_sd, tmp_path / "one", labels={"a blue square": "bad"})
    with pytest.raises(UnseeError, match="one class only"):
        erase(_cfg(tiny_sd, tmp_path / "d", feedback=one_class, reward=reward))
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_leak_repeat_draws_the_flagged_prompts_that_do_not_name_the_concept_more_often(
    tiny_sd, labelled, tmp_path
):
    from unsee.erase.feedback import leak_weighted
    from unsee.erase.run import erase

    folder, _ = labelled
    flagged = ["a red circle, by Vanmond", "a starry night", "Vanmond's star", "night sky"]
    cfg = _cfg(tiny_sd, tmp_path / "a", feedback=folder, concept=["Vanmond"], leak_repeat=3)
    assert leak_weighted(flagged, cfg) == [
        "a red circle, by Vanmond",
        *["a starry night"] * 3,
        "Vanmond's star",
        *["night sky"] * 3,
    ]
    # repeat 1, or no concept to tell a leak by: the flagged prompts as they are
    assert leak_weighted(flagged, _cfg(tiny_sd, tmp_path / "b", feedback=folder,
                                       concept=["Vanmond"])) == flagged  # fmt: skip
    assert leak_weighted(flagged, _cfg(tiny_sd, tmp_path / "c", feedback=folder,
                                       leak_repeat=3)) == flagged  # fmt: skip
    # end to end: the labelled set's flagged prompt names no Vanmond, so it is a leak
    out = erase(_cfg(tiny_sd, tmp_path / "f", feedback=folder, reward=labelled[1],
                     concept=["Vanmond"], leak_repeat=3))  # fmt: skip
    assert (out / "feedback" / "anchors.txt").read_text() == "a red circle\n" * 3
    assert json.loads((out / "feedback" / "plan.json").read_text())["leak_repeat"] == 3
    with pytest.raises(UnseeError, match="--leak-repeat must be at least 1"):
        _cfg(tiny_sd, tmp_path / "d", feedback=folder, leak_repeat=0)
    with pytest.raises(UnseeError, match="--leak-repeat goes with --feedback"):
        _cfg(tiny_sd, tmp_path / "e", concept=["x"], leak_repeat=2)
