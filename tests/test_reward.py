import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unsee.bench.label import make_world_set
from unsee.errors import UnseeError
from unsee.feedback.config import LabelConfig
from unsee.feedback.server import open_state
from unsee.feedback.store import FeedbackStore
from unsee.reward import losses
from unsee.reward.config import RewardScoreConfig, RewardTrainConfig
from unsee.reward.data import load_feedback, ranking_pairs
from unsee.reward.metrics import auc
from unsee.reward.model import load_reward
from unsee.reward.score import score_folder
from unsee.reward.train import train_reward
from unsee.world.render import make_dataset


def test_weighted_bce_down_weights_benign_examples():
    logits = torch.tensor([0.3, -0.2])
    y = torch.tensor([1, 0])
    full = losses.weighted_bce(logits, y, 1.0)
    light = losses.weighted_bce(logits, y, 0.1)
    benign = -torch.nn.functional.logsigmoid(logits[0])
    malign = -torch.nn.functional.logsigmoid(-logits[1])
    torch.testing.assert_close(full, (benign + malign) / 2)
    torch.testing.assert_close(light, (0.1 * benign + malign) / 2)


def test_bradley_terry_prefers_the_right_order():
    better, worse, size = (torch.from_numpy(a) for a in ranking_pairs([[0, 1, 2]]))
    assert better.tolist() == [1, 2, 2] and worse.tolist() == [0, 0, 1]  # rank 1 is worst
    right = losses.bradley_terry(torch.tensor([-1.0, 0.0, 1.0]), better, worse, size)
    wrong = losses.bradley_terry(torch.tensor([1.0, 0.0, -1.0]), better, worse, size)
    assert right < wrong
    flat = losses.bradley_terry(torch.zeros(3), better, worse, size)
    torch.testing.assert_close(flat, torch.tensor(np.log(2) / 3, dtype=torch.float32))


def test_auc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    positive = rng.random(60) < 0.4
    pairs = [(a > b) + 0.5 * (a == b) for a in scores[positive] for b in scores[~positive]]
    assert auc(scores, positive) == pytest.approx(np.mean(pairs))
    assert auc([1, 2, 3], [False, True, True]) == 1.0


@pytest.fixture(scope="module")
def world_set(tmp_path_factory) -> Path:
    """Rendered images whose truth is known, labelled by it: bad = watermarked."""
    folder = make_world_set(tmp_path_factory.mktemp("reward") / "set", 48, seed=11)
    _, attrs, _ = make_dataset(48, 11)
    store = FeedbackStore.for_folder(folder)
    store.register_images([{"file_name": f"images/{i:06d}.png"} for i in range(48)])
    for image, a in zip(store.images(), attrs, strict=True):
        store.add_label(image.image_id, "truth", "bad" if a.watermark else "good", 1.0)
    return folder


def copy_with(folder: Path, tmp_path: Path, labels: list[tuple[int, str]]) -> Path:
    out = tmp_path / "set"
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("feedback.sqlite*"))
    store = FeedbackStore.for_folder(out)
    store.register_images([{"file_name": f"images/{i:06d}.png"} for i in range(48)])
    for image_id, label in labels:
        store.add_label(image_id, "a", label, None)
    return out


def test_bad_feedback_is_refused(world_set, tmp_path):
    with pytest.raises(UnseeError, match="one class only"):
        load_feedback(copy_with(world_set, tmp_path / "1", [(1, "bad"), (2, "bad")]), "binary")
    with pytest.raises(UnseeError, match="at least 2 of each"):
        load_feedback(
            copy_with(world_set, tmp_path / "2", [(1, "bad"), (2, "good"), (3, "good")]), "binary"
        )
    with pytest.raises(UnseeError, match="no rankings"):
        load_feedback(world_set, "rank")
    missing = copy_with(
        world_set, tmp_path / "3", [(1, "bad"), (2, "bad"), (3, "good"), (4, "good")]
    )
    (missing / "images" / "000002.png").unlink()
    with pytest.raises(UnseeError, match=r"000002\.png is missing"):
        load_feedback(missing, "binary")


def test_clip_ensemble_learns_the_watermark_and_reloads(world_set, tmp_path):
    out = train_reward(
        RewardTrainConfig(dir=world_set, out=tmp_path / "r", ensemble=3, cv_folds=3, device="cpu")
    )
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"] == "clip" and config["loss"] == "bce" and config["ensemble"] == 3
    assert config["label_counts"]["bad"] > 4 and config["unsee_version"]
    report = json.loads((out / "report.json").read_text())
    assert len(report["member_losses"]) == 3 and report["cross_validation"]["folds"] == 3
    reward = load_reward(out)
    # fresh rendered images: the reward ranks watermarked ones lower
    images, attrs, _ = make_dataset(300, seed=99)
    log_prob = -np.logaddexp(0, -reward.score_images(images)).sum(-1)
    # better than chance; how good (the 0.95 bar) is `unsee bench reward`'s to measure
    assert auc(-log_prob, np.array([a.watermark for a in attrs])) > 0.6
    # differentiable with respect to the image, for guidance
    x = torch.zeros(2, 3, 32, 32, requires_grad=True)
    reward.log_prob(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in reward.parameters())


def test_cnn_reward_through_latents_and_score_file(world_set, tmp_path):
    out = train_reward(
        RewardTrainConfig(
            dir=world_set,
            out=tmp_path / "cnn",
            backbone="cnn",
            ensemble=2,
            steps=40,
            augment=True,
            cv_folds=0,
            device="cpu",
        )
    )
    reward = load_reward(out)
    from unsee.models.load import load_pipeline

    vae = load_pipeline("minisd", "cpu").vae
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    reward.log_prob_latents(z, vae).sum().backward()
    assert z.grad.abs().sum() > 0
    path = score_folder(RewardScoreConfig(reward=out, dir=world_set, device="cpu"))
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 48 and len(rows[0]["scores"]) == 2
    assert all(r["score"] <= 0 and 0 <= r["p_bad"] <= 1 for r in rows)
    # the labelling page can serve the likeliest bad first
    state = open_state(LabelConfig(dir=world_set, order="bad-first"))
    ids = {i.image_id: i.file_name for i in state.store.images()}
    p_bad = {r["file_name"]: r["p_bad"] for r in rows}
    served = [p_bad[ids[i]] for i in state.order]
    assert served == sorted(served, reverse=True)
    uncertain = open_state(LabelConfig(dir=world_set, order="uncertain"))
    gaps = [abs(p_bad[ids[i]] - 0.5) for i in uncertain.order]
    assert gaps == sorted(gaps)


def test_label_order_by_reward_needs_scores(tmp_path):
    folder = make_world_set(tmp_path / "s", 4)
    with pytest.raises(UnseeError, match="unsee reward score"):
        open_state(LabelConfig(dir=folder, order="uncertain"))


def test_ranking_reward_learns_the_style(tmp_path):
    folder = make_world_set(tmp_path / "s", 60, seed=5)
    _, attrs, _ = make_dataset(60, 5)
    store = FeedbackStore.for_folder(folder)
    store.register_images([{"file_name": f"images/{i:06d}.png"} for i in range(60)])
    ids = [i.image_id for i in store.images()]
    for g in range(12):  # rank 5 at a time: Vanmond's first
        group = list(range(g * 5, g * 5 + 5))
        group.sort(key=lambda i: attrs[i].style != "Vanmond")
        store.add_ranking([ids[i] for i in group], "ranker", None)
    out = train_reward(RewardTrainConfig(dir=folder, out=tmp_path / "r", cv_folds=3, device="cpu"))
    report = json.loads((out / "report.json").read_text())
    assert report["loss"] == "bt" and report["counts"]["rankings"] == 12
    assert 0 <= report["cross_validation"]["pairwise_accuracy"] <= 1
    images, fresh, _ = make_dataset(300, seed=77)
    log_prob = -np.logaddexp(0, -load_reward(out).score_images(images)).sum(-1)
    assert auc(-log_prob, np.array([a.style == "Vanmond" for a in fresh])) > 0.8


def test_noise_aware_reward_checks_its_model(world_set, tmp_path, tiny_sd):
    out = train_reward(
        RewardTrainConfig(
            dir=world_set,
            out=tmp_path / "na",
            backbone="noise-aware",
            ensemble=1,
            steps=30,
            cv_folds=0,
            device="cpu",
        )
    )
    reward = load_reward(out)
    assert reward.config["sample_shape"] == [4, 8, 8]
    x = torch.randn(3, 4, 8, 8)
    assert reward.log_prob(x, t=torch.tensor(500)).shape == (3,)
    from unsee.models.load import load_pipeline

    reward.check_model(load_pipeline("minisd", "cpu"))  # its own model: fine
    with pytest.raises(UnseeError, match="noise-aware reward reads samples of shape"):
        reward.check_model(load_pipeline(str(tiny_sd), "cpu"))
    with pytest.raises(UnseeError, match="scores noisy samples"):
        reward.score_images(np.zeros((1, 32, 32, 3), np.uint8))
    # minisd itself, but at twice its size: other latents, refused before any folder is made
    from unsee.censor.config import CensorConfig
    from unsee.censor.run import censor

    minisd = load_pipeline("minisd", "cpu")
    side = 2 * minisd.vae_scale_factor * minisd.unet.config.sample_size  # 64 px for 32 px
    with pytest.raises(UnseeError, match=r"asked for \[4, 16, 16\]"):
        censor(
            CensorConfig(
                reward=out, prompt="x", out=tmp_path / "c", height=side, width=side, device="cpu"
            )
        )
    assert not (tmp_path / "c").exists()


def test_a_damaged_reward_folder_is_one_clear_error(world_set, tmp_path):
    import shutil

    good = train_reward(
        RewardTrainConfig(
            dir=world_set, out=tmp_path / "good", backbone="cnn", ensemble=1, steps=2,
            cv_folds=0, device="cpu",
        )
    )  # fmt: skip
    config = json.loads((good / "config.json").read_text())
    weights = (good / "model.safetensors").read_bytes()
    damages = [
        ("config.json", "{not json", r"config\.json is not JSON"),
        ("config.json", "[1, 2]", "not a JSON object"),
        (
            "config.json",
            json.dumps({**config, "ensemble": "3"}),
            "ensemble is missing or not valid",
        ),
        ("config.json", json.dumps({**config, "image_size": None}), "image_size is missing"),
        ("config.json", json.dumps({**config, "ensemble": 2}), "does not hold the weights"),
        ("model.safetensors", weights[: len(weights) // 2], r"model\.safetensors cannot be read"),
        ("model.safetensors", b"", r"model\.safetensors cannot be read"),
    ]
    for name, content, message in damages:
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(good, bad)
        target = bad / name
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(UnseeError, match=message) as error:
            score_folder(RewardScoreConfig(reward=bad, dir=world_set, device="cpu"))
        assert "unsee reward train" in str(error.value)  # the fix is named


def test_a_noise_aware_reward_scores_the_finished_latents_for_retry():
    from unsee.guidance.hook import Censor
    from unsee.guidance.reward_guidance import Guidance
    from unsee.reward.model import RewardModel
    from unsee.reward.noise_aware import NoiseAwareReward

    torch.manual_seed(0)
    config = {"backbone": "noise-aware", "ensemble": 2, "sample_shape": [4, 8, 8]}
    reward = RewardModel(config, [NoiseAwareReward(4), NoiseAwareReward(4)]).eval()
    hook = Censor(reward, Guidance(scale=1.0))
    images = torch.zeros(3, 32, 32, 3, dtype=torch.uint8)
    assert hook.score(images) == [{}, {}, {}]  # no latents: nothing to read
    x0 = torch.randn(3, 4, 8, 8)
    scores = hook.score(images, x0)
    want = torch.sigmoid(reward.logits(x0, t=torch.zeros(3))).mean(-1)
    got = torch.tensor([s["reward_prob"] for s in scores])
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=0)
    assert len({s["reward_prob"] for s in scores}) == 3  # each image its own score
