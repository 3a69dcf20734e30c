import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.invert.config import InvertConfig
from unsee.invert.hfi import inversion_weights, weighted_denoising_loss
from unsee.invert.run import invert, splice_vectors
from unsee.reward.cnn import CnnReward
from unsee.reward.model import RewardModel, load_reward, p_bad


def test_weights_keep_the_top_k_by_reward_and_average_one():
    p = np.array([0.1, 0.9, 0.0, 0.5])
    chosen, w = inversion_weights(p, top_k=3, weighting="reward")
    assert chosen.tolist() == [1, 3, 0]
    np.testing.assert_allclose(w, np.array([0.9, 0.5, 0.1]) / 0.5)
    chosen, w = inversion_weights(p, top_k=None, weighting="uniform")
    assert len(chosen) == 4 and np.all(w == 1)
    with pytest.raises(ValueError, match="probability of 0"):
        inversion_weights(np.zeros(3), None, "reward")


def test_weighted_denoising_loss_is_the_hand_computed_mean():
    pred = torch.zeros(2, 1, 1, 2)
    target = torch.tensor([[[[1.0, 1.0]]], [[[2.0, 0.0]]]])
    # per image: 1 and 2; weighted by 0.5 and 1.5: (0.5 + 3) / 2
    loss = weighted_denoising_loss(pred, target, torch.tensor([0.5, 1.5]))
    assert loss.item() == pytest.approx(1.75)


def test_spliced_vectors_get_the_only_gradient():
    emb = torch.nn.Embedding(10, 4)
    table = emb.weight.detach().clone()
    v = torch.nn.Parameter(torch.ones(2, 4))
    handle = splice_vectors(emb, [7, 9], v)
    out = emb(torch.tensor([[1, 7, 9, 7]]))
    torch.testing.assert_close(out[0, 1:], torch.ones(3, 4))
    torch.testing.assert_close(out[0, 0], table[1])
    emb.weight.requires_grad_(False)
    out.sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor([[2.0] * 4, [1.0] * 4]))
    handle.remove()
    torch.testing.assert_close(emb(torch.tensor([7])), table[7:8])


@pytest.fixture(scope="module")
def feedback(tiny_sd, tmp_path_factory):
    """A generated set and a (random) cnn reward over it."""
    root = tmp_path_factory.mktemp("invert")
    folder = generate(
        GenerateConfig(
            model=str(tiny_sd), prompt="a red circle", n=6, steps=2, out=root / "set", device="cpu"
        )
    )
    torch.manual_seed(0)
    reward = RewardModel({"backbone": "cnn", "ensemble": 1, "image_size": 32}, [CnnReward(32)])
    reward.save(root / "reward")
    return folder, root / "reward"


def test_invert_learns_only_the_token_and_reloads_through_diffusers(tiny_sd, feedback, tmp_path):
    folder, reward_dir = feedback
    out = tmp_path / "token.safetensors"
    cfg = InvertConfig(
        model=str(tiny_sd), feedback=folder, reward=reward_dir, init="circle", token="<look>",
        num_vectors=2, top_k=4, steps=4, batch=2, lr=0.05, out=out, device="cpu",
    )  # fmt: skip
    invert(cfg)
    learned = load_file(out)
    assert list(learned) == ["<look>"] and learned["<look>"].shape == (2, 32)

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    init_id = pipe.tokenizer("circle", add_special_tokens=False).input_ids[0]
    start = pipe.text_encoder.get_input_embeddings().weight[init_id].detach()
    assert not torch.allclose(learned["<look>"][0], start)  # it trained
    table = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    # plain diffusers loads it; the prompt then reads the learned vectors
    pipe.load_textual_inversion(str(out))
    ids = pipe.tokenizer.convert_tokens_to_ids(["<look>", "<look>_1"])
    after = pipe.text_encoder.get_input_embeddings().weight.detach()
    torch.testing.assert_close(after[ids], learned["<look>"])
    torch.testing.assert_close(after[: len(table)], table)
    image = pipe("a <look> on grass", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (32, 32, 3)

    # the settings: the top 4 images by the reward's concept probability
    info = json.loads(out.with_suffix(".json").read_text())
    reward = load_reward(reward_dir)
    from unsee.imageset import load_images, read_image_set

    records = read_image_set(folder)
    p = p_bad(reward.score_images(load_images(folder, records, None)))
    top = {records[i]["file_name"] for i in np.argsort(-p)[:4]}
    assert {c["file_name"] for c in info["chosen"]} == top
    assert info["tokens"] == ["<look>", "<look>_1"] and len(info["loss_last"]) == 4


def test_invert_refuses_bad_input(tiny_sd, feedback, tmp_path):
    folder, reward_dir = feedback
    base = dict(model=str(tiny_sd), feedback=folder, reward=reward_dir, steps=1, device="cpu")
    with pytest.raises(UnseeError, match="one token"):
        invert(InvertConfig(init="a red", out=tmp_path / "a.safetensors", **base))
    with pytest.raises(UnseeError, match="already has"):
        invert(InvertConfig(init="red", token="circle", out=tmp_path / "b.safetensors", **base))
    with pytest.raises(UnseeError, match=r"\.safetensors"):
        InvertConfig(init="red", out=tmp_path / "token.bin", **base)
    with pytest.raises(UnseeError, match="not a reward folder"):
        invert(
            InvertConfig(
                init="red", out=tmp_path / "c.safetensors", **(base | {"reward": tmp_path})
            )
        )
