import json

import pytest
import torch
from diffusers import DDIMPipeline, StableDiffusionPipeline

from unsee.errors import UnseeError
from unsee.models import load
from unsee.models.load import load_pipeline, pick_dtype


def test_loads_a_local_stable_diffusion_folder(tiny_sd):
    pipe = load_pipeline(str(tiny_sd), device="cpu")
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.device.type == "cpu"
    assert pipe.unet.dtype == torch.float32
    assert pipe.safety_checker is None


def test_dtype_can_be_overridden(tiny_sd):
    pipe = load_pipeline(str(tiny_sd), device="cpu", dtype="bf16")
    assert pipe.unet.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16


def test_auto_dtype_is_half_on_gpus_and_full_on_cpu():
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("auto", torch.device("mps")) == torch.float16


def test_loads_an_unconditional_pipeline(tiny_uncond):
    assert isinstance(load_pipeline(str(tiny_uncond), device="cpu"), DDIMPipeline)


def _fake_pipeline(tmp_path, class_name):
    folder = tmp_path / class_name
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return str(folder)


def test_sdxl_folder_is_loaded_not_refused(tmp_path):
    # an SDXL index is supported (tests/test_sdxl.py loads real ones); this one has no parts
    with pytest.raises(UnseeError, match="could not load model"):
        load_pipeline(_fake_pipeline(tmp_path, "StableDiffusionXLPipeline"), device="cpu")


def test_other_pipelines_are_refused_naming_what_is_supported(tmp_path):
    with pytest.raises(UnseeError, match=r"FluxPipeline.*supported: Stable Diffusion 1\.x/2\.x"):
        load_pipeline(_fake_pipeline(tmp_path, "FluxPipeline"), device="cpu")


def test_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(UnseeError, match="not a diffusers pipeline"):
        load_pipeline(str(tmp_path), device="cpu")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0")
    with pytest.raises(UnseeError, match="is a file"):
        load_pipeline(str(path), device="cpu")
    # .ckpt / .safetensors are read as single-file checkpoints (tests/test_sdxl.py)
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\0")
    with pytest.raises(UnseeError, match="could not read checkpoint"):
        load_pipeline(str(path), device="cpu")


def test_missing_path(tmp_path):
    with pytest.raises(UnseeError, match="not found"):
        load_pipeline(str(tmp_path / "missing" / "model"), device="cpu")


def test_broken_pipeline_folder(tiny_sd, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(UnseeError, match="could not load model"):
        load_pipeline(str(broken), device="cpu")


def test_hub_id_offline_and_not_cached():
    with pytest.raises(UnseeError, match=r"not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        load_pipeline("someone/some-model", device="cpu")


def test_hub_id_with_no_network(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(UnseeError, match="cannot be reached"):
        load_pipeline("someone/some-model", device="cpu")


def test_minisd_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(load, "MINISD_DIR", tmp_path / "minisd")
    with pytest.raises(UnseeError, match="unsee world train"):
        load_pipeline("minisd", device="cpu")


def test_unavailable_device_is_refused(tiny_sd):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UnseeError, match="no CUDA GPU"):
        load_pipeline(str(tiny_sd), device="cuda")
