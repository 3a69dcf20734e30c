import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pixels, read_metadata

from unsee import imageset
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate

STEPS = 4


def config(model, out, **kw):
    kw.setdefault("prompt", "a red circle on grass")
    return GenerateConfig(model=str(model), device="cpu", out=Path(out), steps=STEPS, **kw)


def test_metadata_format_and_imagefolder_loading(tiny_sd, tmp_path):
    out = generate(config(tiny_sd, tmp_path / "set", n=3, seed=11, negative_prompt="blurry"))
    records = read_metadata(out)
    assert [r["file_name"] for r in records] == [f"images/00000{i}.png" for i in range(3)]
    for i, r in enumerate(records):
        assert r["prompt"] == "a red circle on grass"
        assert r["seed"] == 11 + i
        assert r["negative_prompt"] == "blurry"
        assert (r["steps"], r["guidance"], r["model"]) == (STEPS, 7.5, str(tiny_sd))
        assert r["unsee_version"]
        assert (out / r["file_name"]).is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["images"] == 3
    # the PNG carries its own metadata too
    from PIL import Image

    assert json.loads(Image.open(out / records[0]["file_name"]).info["unsee"])["seed"] == 11

    from datasets import load_dataset

    ds = load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(ds) == 3
    assert sorted(ds["seed"]) == [11, 12, 13]
    assert ds[0]["image"].size == (32, 32)


def test_same_prompt_and_seed_give_same_pixels_whatever_the_batch_size(tiny_sd, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square in the desert\n")
    one = pixels(
        generate(config(tiny_sd, tmp_path / "b1", prompt=None, prompts=prompts, n=3, batch_size=1))
    )
    three = pixels(
        generate(config(tiny_sd, tmp_path / "b4", prompt=None, prompts=prompts, n=3, batch_size=4))
    )
    assert one.keys() == three.keys() and len(one) == 6
    for name in one:
        np.testing.assert_array_equal(one[name], three[name], err_msg=name)
    # and the images are not all alike: seeds and prompts matter
    assert not np.array_equal(one["images/000000.png"], one["images/000001.png"])
    assert not np.array_equal(one["images/000000.png"], one["images/000003.png"])


def test_same_pixels_under_accelerate_with_two_processes(tiny_sd, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na green star\na starry night\n")
    single = pixels(
        generate(
            config(tiny_sd, tmp_path / "single", prompt=None, prompts=prompts, n=2, batch_size=2)
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # accelerate's torchrun launcher; on a CPU it forms a gloo group
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "unsee",
        "generate",
        "--model",
        str(tiny_sd),
        "--prompts",
        str(prompts),
        "--n",
        "2",
        "--batch-size",
        "2",
        "--steps",
        str(STEPS),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "multi"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    multi = pixels(tmp_path / "multi")
    assert json.loads((tmp_path / "multi" / "run.json").read_text())["processes"] == 2
    assert list(multi) == list(single)  # sorted, one line per image, no duplicates
    for name in single:
        np.testing.assert_array_equal(single[name], multi[name], err_msg=name)


def test_resume_skips_finished_images_and_repairs_a_killed_run(tiny_sd, tmp_path):
    cfg = config(tiny_sd, tmp_path / "set", n=4)
    out = generate(cfg)
    before = pixels(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    # a kill mid-run: image 3's metadata line cut short, image 2 deleted, a temp file left
    lines = (out / "metadata.jsonl").read_text().splitlines(keepends=True)
    (out / "metadata.jsonl").write_text("".join(lines[:3]) + lines[3][:25])
    (out / "images" / "000002.png").unlink()
    (out / "images" / ".000001.png.abc.tmp").write_bytes(b"half")

    first_seconds = json.loads((out / "run.json").read_text())["seconds"]
    generate(cfg)
    after = pixels(out)
    # the sampling time adds up over the sittings (a benchmark reads it from run.json)
    assert json.loads((out / "run.json").read_text())["seconds"] > first_seconds
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    now = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir() if p.suffix == ".png"}
    assert now["000000.png"] == mtimes["000000.png"]  # untouched
    assert now["000001.png"] == mtimes["000001.png"]
    assert now["000003.png"] != mtimes["000003.png"]  # remade: its line was cut
    assert not (out / "images" / ".000001.png.abc.tmp").exists()  # the stale temp file too


def test_interrupted_run_leaves_only_complete_entries(tiny_sd, tmp_path, monkeypatch):
    cfg = config(tiny_sd, tmp_path / "set", n=5, batch_size=1)
    real_save = imageset.save_png
    saved = []

    def save_then_die(image, path, info):
        if len(saved) == 2:
            raise KeyboardInterrupt
        real_save(image, path, info)
        saved.append(path)

    monkeypatch.setattr(imageset, "save_png", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg)
    out = cfg.out
    assert json.loads((out / "run.json").read_text())["complete"] is False
    assert [r["index"] for r in read_metadata(out)] == [0, 1]
    assert not [p for p in (out / "images").iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setattr(imageset, "save_png", real_save)
    generate(cfg)
    assert [r["index"] for r in read_metadata(out)] == [0, 1, 2, 3, 4]
    assert json.loads((out / "run.json").read_text())["complete"] is True


def test_resume_with_other_settings_is_refused(tiny_sd, tmp_path):
    generate(config(tiny_sd, tmp_path / "set", n=2))
    with pytest.raises(UnseeError, match=r"other settings.*seed"):
        generate(config(tiny_sd, tmp_path / "set", n=2, seed=5))


def test_csv_seeds_guidance_and_ids(tiny_sd, tmp_path):
    prompts = tmp_path / "i2p.csv"
    prompts.write_text(
        "prompt,evaluation_seed,evaluation_guidance,case_number\n"
        "a red circle,500,3,7\na blue square,600,1,8\n"
    )
    out = generate(config(tiny_sd, tmp_path / "set", prompt=None, prompts=prompts, n=2))
    records = read_metadata(out)
    assert [(r["seed"], r["guidance"], r["case_number"]) for r in records] == [
        (500, 3.0, "7"),
        (501, 3.0, "7"),
        (600, 1.0, "8"),
        (601, 1.0, "8"),
    ]


def test_negative_prompt_and_guidance_change_the_image(tiny_sd, tmp_path):
    base = pixels(generate(config(tiny_sd, tmp_path / "a")))["images/000000.png"]
    neg = pixels(generate(config(tiny_sd, tmp_path / "b", negative_prompt="grass")))
    off = pixels(generate(config(tiny_sd, tmp_path / "c", guidance=1.0)))
    assert not np.array_equal(base, neg["images/000000.png"])
    assert not np.array_equal(base, off["images/000000.png"])


def test_unconditional_pipeline(tiny_uncond, tmp_path):
    out = generate(config(tiny_uncond, tmp_path / "u", prompt=None, n=3))
    records = read_metadata(out)
    assert len(records) == 3 and records[0]["prompt"] == ""
    assert pixels(out)["images/000000.png"].shape == (16, 16, 3)
    with pytest.raises(UnseeError, match="unconditional; it takes no prompt"):
        generate(config(tiny_uncond, tmp_path / "u2", prompt="a cat"))


def test_prompt_is_required_for_text_to_image(tiny_sd, tmp_path):
    with pytest.raises(UnseeError, match="give a prompt"):
        generate(config(tiny_sd, tmp_path / "x", prompt=None))


def test_too_long_prompt_is_truncated_with_a_warning(tiny_sd, tmp_path, caplog):
    long_prompt = "a red circle " + "and a blue square " * 30
    with caplog.at_level("WARNING", logger="unsee"):
        generate(config(tiny_sd, tmp_path / "x", prompt=long_prompt))
    assert "the text encoder reads 77" in caplog.text


def test_bad_sizes_are_refused(tiny_sd, tmp_path):
    with pytest.raises(UnseeError, match="multiple of 8"):
        generate(config(tiny_sd, tmp_path / "x", height=36))
    with pytest.raises(UnseeError, match="at least 1"):
        config(tiny_sd, tmp_path / "x", n=0)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_created_with_the_umask(tmp_path, umask, mode):
    from PIL import Image

    old = os.umask(umask)
    try:
        imageset.atomic_write_text(tmp_path / "run.json", "{}\n")
        imageset.save_png(Image.new("RGB", (2, 2)), tmp_path / "a.png", {})
        imageset.append_line(tmp_path / "metadata.jsonl", {"index": 0})
        with imageset.atomic_file(tmp_path / "model.bin", "wb") as f:
            f.write(b"\0")
    finally:
        os.umask(old)
    for name in ("run.json", "a.png", "metadata.jsonl", "model.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png",
        "metadata.jsonl",
        "model.bin",
        "run.json",
    ]  # no temporary file left


@pytest.mark.slow
def test_compiled_unet_agrees_with_eager():
    """generate's GPU speed-up (channels_last, fused projections, torch.compile), here on
    the CPU: the compiled U-Net gives the eager one's noise estimates to tolerance."""
    from unsee.models.load import optimize_inference
    from unsee.models.tiny import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    text = pipe.encode_prompt(["a red circle", "a blue star"], "cpu", 1, False)[0]
    t = torch.tensor(500)
    with torch.no_grad():
        eager = pipe.unet(x, t, encoder_hidden_states=text).sample
        optimize_inference(pipe)
        assert pipe.unet._compiled_call_impl is not None  # compiled in place
        compiled = pipe.unet(x, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_generate_compiles_only_on_a_gpu_and_for_large_sets_when_auto(tmp_path):
    from unsee.generate.config import GenerateConfig
    from unsee.generate.run import COMPILE_FROM, _compiles

    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    auto = GenerateConfig(out=tmp_path, prompt="x")
    assert not _compiles(auto, gpu, COMPILE_FROM - 1)
    assert _compiles(auto, gpu, COMPILE_FROM)
    assert not _compiles(auto, cpu, 10 * COMPILE_FROM)  # the CPU never compiles
    asked = GenerateConfig(out=tmp_path, prompt="x", optimize="compile")
    assert _compiles(asked, gpu, 1) and not _compiles(asked, gpu, 0)
    assert not _compiles(GenerateConfig(out=tmp_path, prompt="x", optimize="none"), gpu, 10**6)


def test_image_writer_keeps_order_and_raises_the_threads_error(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    writer = imageset.ImageWriter(tmp_path, pending=2)
    for i in range(5):
        record = {"file_name": imageset.image_name(i), "index": i}
        writer.put(Image.new("RGB", (4, 4), (i, 0, 0)), record)
    writer.close()
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert all((tmp_path / imageset.image_name(i)).is_file() for i in range(5))

    broken = imageset.ImageWriter(tmp_path / "missing")  # no such folder: the save fails
    broken.put(Image.new("RGB", (4, 4)), {"file_name": "images/000000.png", "index": 0})
    with pytest.raises(FileNotFoundError):
        broken.close()
