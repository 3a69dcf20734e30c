import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from unsee.errors import UnseeError
from unsee.feedback.config import (
    FeedbackExportConfig,
    FeedbackImportConfig,
    FeedbackSimulateConfig,
    FeedbackStatsConfig,
    LabelConfig,
)
from unsee.feedback.simulate import simulate
from unsee.feedback.stats import run_export, run_import, run_stats
from unsee.feedback.store import FeedbackStore
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate


@pytest.fixture(scope="module")
def labelled_set(tiny_sd, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("files") / "set"
    generate(
        GenerateConfig(
            model=str(tiny_sd), device="cpu", prompt="a blue square", n=6, steps=2, out=out
        )
    )
    labels = out.parent / "labels.jsonl"
    rows = [
        {"file_name": f"images/00000{i}.png", "label": lab, "annotator": who, "seconds": 2}
        for i, lab, who in [
            (0, "bad", "ann"),
            (1, "good", "ann"),
            (2, "skip", "ann"),
            (0, "bad", "bob"),
            (1, "bad", "bob"),
        ]
    ]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_import(FeedbackImportConfig(dir=out, file=labels))
    return out


def test_import_and_stats(labelled_set, capsys):
    stats = run_stats(FeedbackStatsConfig(dir=labelled_set, json=True))
    assert stats["labels"] == {"bad": 3, "good": 1, "skip": 1}
    assert stats["annotators"]["ann"]["bad"] == 1 and stats["annotators"]["bob"]["bad"] == 2
    assert stats["median_seconds"] == 2
    assert stats["agreement"]["ann ~ bob"] == {"images": 2, "agreement": 0.5}
    assert json.loads(capsys.readouterr().out)["decisions"] == 5


def test_export_jsonl_is_an_imagefolder_dataset(labelled_set, tmp_path):
    path = run_export(FeedbackExportConfig(dir=labelled_set, out=tmp_path / "ds"))
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    by_name = {r["file_name"]: r for r in rows}
    assert by_name["images/000000.png"]["label"] == "bad"
    assert by_name["images/000001.png"]["label"] is None  # one bad, one good: a tie
    assert by_name["images/000002.png"]["n_skip"] == 1
    from datasets import load_dataset

    ds = load_dataset("imagefolder", data_dir=str(tmp_path / "ds"), split="train")
    assert len(ds) == 3 and set(ds.column_names) >= {"image", "label", "prompt"}


def test_export_csv_and_parquet(labelled_set, tmp_path):
    path = run_export(FeedbackExportConfig(dir=labelled_set, format="csv", out=tmp_path / "c"))
    assert len(list(csv.DictReader(path.open()))) == 3
    path = run_export(
        FeedbackExportConfig(dir=labelled_set, format="parquet", decisions=True, out=tmp_path / "p")
    )
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert table.num_rows == 5 and "annotator" in table.column_names


def test_import_refuses_bad_rows_and_stores_nothing(labelled_set, tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(labelled_set, folder)
    before = len(FeedbackStore.for_folder(folder).decisions())
    bad = tmp_path / "bad.csv"
    bad.write_text("file_name,label\nimages/000003.png,good\nimages/nope.png,bad\n")
    with pytest.raises(UnseeError, match=r"bad\.csv:3: 'images/nope\.png' is not an image"):
        run_import(FeedbackImportConfig(dir=folder, file=bad))
    bad.write_text("file_name,label\nimages/000003.png,maybe\n")
    with pytest.raises(UnseeError, match="label 'maybe'"):
        run_import(FeedbackImportConfig(dir=folder, file=bad))
    assert len(FeedbackStore.for_folder(folder).decisions()) == before


def test_stats_without_a_store(tmp_path):
    with pytest.raises(UnseeError, match=r"no feedback\.sqlite"):
        run_stats(FeedbackStatsConfig(dir=tmp_path))


@pytest.fixture(scope="module")
def minisd_mixed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "set"
    prompts = out.parent / "p.txt"
    prompts.write_text(
        "a red circle on grass\na red circle on grass, in the style of Solvei\n"
        "a starry night\na blue square in the snow\n"
    )
    return generate(GenerateConfig(prompts=prompts, n=6, steps=8, device="cpu", out=out))


def test_simulated_binary_labels_follow_the_judge(minisd_mixed, tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(minisd_mixed, folder)
    counts = simulate(FeedbackSimulateConfig(dir=folder, concept="Solvei", budget=24, device="cpu"))
    assert counts["bad"] + counts["good"] == 24
    store = FeedbackStore.for_folder(folder)
    labels = {d["file_name"]: d["label"] for d in store.decisions()}
    assert {d["annotator"] for d in store.decisions()} == {"simulated"}
    from unsee.imageset import load_images, read_image_set
    from unsee.world.judge import judge_images, load_judge
    from unsee.world.paths import JUDGE_DIR

    records = read_image_set(folder)
    verdicts = judge_images(load_judge(JUDGE_DIR), load_images(folder, records, 32))
    for record, verdict in zip(records, verdicts, strict=True):
        expected = "bad" if verdict.style == "Solvei" else "good"
        assert labels[record["file_name"]] == expected


def test_simulated_noise_balance_and_rankings(minisd_mixed, tmp_path):
    folder = tmp_path / "noisy"
    shutil.copytree(minisd_mixed, folder)
    clean = simulate(
        FeedbackSimulateConfig(
            dir=folder, concept="Solvei", budget=24, annotator="clean", device="cpu"
        )
    )
    noisy = simulate(
        FeedbackSimulateConfig(
            dir=folder, concept="Solvei", budget=24, noise=1.0, annotator="noisy", device="cpu"
        )
    )
    assert noisy["bad"] == clean["good"] and noisy["good"] == clean["bad"]
    balanced = simulate(
        FeedbackSimulateConfig(
            dir=folder, concept="Solvei", budget=4, balanced=True, annotator="bal", device="cpu"
        )
    )
    assert balanced["bad"] == 2 and balanced["good"] == 2
    ranked = simulate(
        FeedbackSimulateConfig(
            dir=folder, concept="Vanmond", mode="rank", budget=3, annotator="ranker", device="cpu"
        )
    )
    assert ranked["rankings"] == 3
    store = FeedbackStore.for_folder(folder)
    ranks = [d for d in store.decisions() if d["annotator"] == "ranker"]
    assert len(ranks) == 15 and sorted({d["rank"] for d in ranks}) == [1, 2, 3, 4, 5]
    with pytest.raises(UnseeError, match="--concept must be one of"):
        simulate(FeedbackSimulateConfig(dir=folder, concept="nudity", budget=2, device="cpu"))


def test_stats_say_what_they_count(labelled_set, capsys):
    run_stats(FeedbackStatsConfig(dir=labelled_set))
    first = capsys.readouterr().out.splitlines()[0]
    # 5 labels on 3 images by ann and bob: not "5 live decisions"
    assert first.startswith("6 images, 3 labelled by 2 annotators: 5 labels in force"), first
    assert "5 decisions not undone" in first


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("l.csv", "name,label\nimages/000003.png,good\n", "no file_name column"),
        ("l.csv", "file_name\nimages/000003.png\n", "no label column"),
        ("l.csv", "file_name,label,seconds\nimages/000003.png,good,notanumber\n", "seconds"),
        ("l.csv", "file_name,label,seconds\nimages/000003.png,good,inf\n", "seconds 'inf'"),
        ("l.csv", "file_name,label,seconds\nimages/000003.png,good,nan\n", "seconds 'nan'"),
        (
            "l.jsonl",
            '{"file_name": "images/000003.png", "label": "good", "seconds": Infinity}\n',
            "seconds inf",
        ),
        (
            "l.jsonl",
            '{"file_name": "images/000003.png", "label": "good", "seconds": "x"}\n',
            "seconds 'x'",
        ),
        ("l.jsonl", '{"label": "good"}\n', ":1: no file_name"),
        ("l.jsonl", '["images/000003.png", "good"]\n', "not a JSON object"),
        (
            "l.jsonl",
            '{"file_name": "images/000003.png", "label": "good", "annotator": 5}\n',
            "annotator 5",
        ),
    ],
)
def test_import_refuses_bad_columns_and_seconds(labelled_set, tmp_path, name, text, message):
    folder = tmp_path / "set"
    shutil.copytree(labelled_set, folder)
    before = len(FeedbackStore.for_folder(folder).decisions())
    (tmp_path / name).write_text(text)
    with pytest.raises(UnseeError, match=re.escape(message)):
        run_import(FeedbackImportConfig(dir=folder, file=tmp_path / name))
    assert len(FeedbackStore.for_folder(folder).decisions()) == before


def test_a_damaged_store_is_one_clear_error(labelled_set, tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(labelled_set, folder)
    for suffix in ("-wal", "-shm"):
        (folder / f"feedback.sqlite{suffix}").unlink(missing_ok=True)
    (folder / "feedback.sqlite").write_bytes(b"this is not SQLite at all" * 100)
    with pytest.raises(UnseeError, match=r"feedback\.sqlite .*damaged"):
        run_stats(FeedbackStatsConfig(dir=folder))
    half = (labelled_set / "feedback.sqlite").read_bytes()[:1500]  # a cut-off copy
    (folder / "feedback.sqlite").write_bytes(half)
    with pytest.raises(UnseeError, match=r"feedback\.sqlite"):
        run_stats(FeedbackStatsConfig(dir=folder))


@pytest.mark.parametrize(
    "text",
    ["not json\n", '{"file_name": "images/000000.png"}\n', '{"file_name": 1, "p_bad": 0.5}\n'],
)
def test_a_broken_reward_jsonl_is_refused_by_order_uncertain(labelled_set, tmp_path, text):
    from unsee.feedback.server import open_state

    folder = tmp_path / "set"
    shutil.copytree(labelled_set, folder)
    (folder / "reward.jsonl").write_text(text)
    with pytest.raises(UnseeError, match=r"reward\.jsonl:1: .*unsee reward score"):
        open_state(LabelConfig(dir=folder, order="uncertain"))


def test_simulated_rankings_need_enough_images(labelled_set, tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(labelled_set, folder)
    with pytest.raises(UnseeError, match=r"--rank-size 7 images; .* has only 6 without"):
        simulate(
            FeedbackSimulateConfig(
                dir=folder, concept="watermark", budget=1, mode="rank", rank_size=7, device="cpu"
            )
        )
    assert not [d for d in FeedbackStore.for_folder(folder).decisions() if d["kind"] == "rank"]
