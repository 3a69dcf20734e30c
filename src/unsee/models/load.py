"""One loader for every command: `minisd`, a local diffusers folder, or a hub id.

Supported: Stable Diffusion 1.x / 2.x (StableDiffusionPipeline) and unconditional
UNet2DModel pipelines (DDPMPipeline, DDIMPipeline). Everything else is refused with a
message naming what is supported.
"""

import json
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from diffusers import DDIMPipeline, DDPMPipeline, DiffusionPipeline, StableDiffusionPipeline

from unsee.errors import UnseeError
from unsee.world.paths import MINISD_DIR

PIPELINES: dict[str, type[DiffusionPipeline]] = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "DDPMPipeline": DDPMPipeline,
    "DDIMPipeline": DDIMPipeline,
}
SUPPORTED = "Stable Diffusion 1.x/2.x (StableDiffusionPipeline) and unconditional DDPM/DDIM"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def process_state(device: str = "auto"):
    """accelerate's PartialState for this process. Processes started by `accelerate launch`
    (torchrun) on a machine without a GPU, or with --device cpu, join a CPU process group
    (gloo): accelerate forms one only when told the run is on the CPU."""
    from accelerate import PartialState

    gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    return PartialState(cpu=device == "cpu" or (device == "auto" and not gpu))


def pick_device(device: str = "auto") -> torch.device:
    """auto: the accelerate process's device (cuda > mps > cpu); otherwise as named."""
    if device == "auto":
        return process_state(device).device
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise UnseeError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnseeError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UnseeError("device 'mps' asked for, but torch sees no Apple GPU")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on a GPU, fp32 on the CPU."""
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in DTYPES:
        raise UnseeError(f"unknown dtype {dtype!r} (use auto, fp32, fp16 or bf16)")
    return DTYPES[dtype]


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_model_index(repo_id: str) -> dict:
    """model_index.json of a hub repo: from the local cache, else downloaded."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        path = hf_hub_download(repo_id, "model_index.json", local_files_only=True)
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise UnseeError(
                f"model {repo_id!r} is not in the local Hugging Face cache"
                f" ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set;"
                " download it first or pass a local folder"
            ) from None
        if not _hub_reachable():
            raise UnseeError(
                f"model {repo_id!r} is not in the local Hugging Face cache"
                f" ({constants.HF_HUB_CACHE}) and the hub ({constants.ENDPOINT})"
                " cannot be reached: no network?"
                " Download it where there is a network, or pass a local folder"
            ) from None
        try:
            path = hf_hub_download(repo_id, "model_index.json")
        except GatedRepoError:
            raise UnseeError(
                f"model {repo_id!r} is gated on the hub: accept its licence and log in"
                " (`hf auth login`)"
            ) from None
        except RepositoryNotFoundError:
            raise UnseeError(f"no model {repo_id!r} on the hub (or it is private)") from None
        except EntryNotFoundError:
            raise UnseeError(
                f"hub repo {repo_id!r} is not a diffusers pipeline (no model_index.json)"
            ) from None
        except HfHubHTTPError as e:
            raise UnseeError(f"hub error for {repo_id!r}: {str(e).splitlines()[0]}") from None
    return json.loads(Path(path).read_text())


def resolve_model(model: str) -> tuple[str, dict]:
    """Where to load `model` from, and its model_index.json."""
    if model == "minisd":
        index = MINISD_DIR / "model_index.json"
        if not index.is_file():
            raise UnseeError(
                f"the embedded minisd weights are missing from this install ({MINISD_DIR});"
                " train them with `unsee world train --out DIR` and pass --model DIR"
            )
        return str(MINISD_DIR), json.loads(index.read_text())
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UnseeError(f"model {model!r} is a file; expected a diffusers pipeline folder")
        index = path / "model_index.json"
        if not index.is_file():
            raise UnseeError(
                f"folder {model!r} is not a diffusers pipeline (no model_index.json in it)"
            )
        try:
            return str(path), json.loads(index.read_text())
        except json.JSONDecodeError as e:
            raise UnseeError(f"{index} is not valid JSON: {e}") from None
    if _HUB_ID.match(model) and not model.startswith((".", "~")):
        return model, _hub_model_index(model)
    raise UnseeError(
        f"model {model!r} not found: not `minisd`, not an existing folder, not a hub id (org/name)"
    )


def pipeline_class(model: str, index: dict) -> type[DiffusionPipeline]:
    name = index.get("_class_name", "")
    if name.startswith("StableDiffusionXL"):
        raise UnseeError(
            f"model {model!r} is an SDXL pipeline ({name}); SDXL is not yet supported"
            f" (supported: {SUPPORTED})"
        )
    if name not in PIPELINES:
        raise UnseeError(
            f"model {model!r} is a {name or 'unnamed'} pipeline, which unsee does not support"
            f" (supported: {SUPPORTED})"
        )
    return PIPELINES[name]


def load_pipeline(model: str, device: str = "auto", dtype: str = "auto") -> DiffusionPipeline:
    """Load a supported diffusers pipeline onto `device`, in `dtype`, progress bars off.

    Raises UnseeError with a one-line reason when the model is missing, unreachable,
    unsupported or broken.
    """
    source, index = resolve_model(model)
    cls = pipeline_class(model, index)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    kwargs: dict = {"dtype": torch_dtype}
    if cls is StableDiffusionPipeline:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnseeError(f"could not load model {model!r}: {first}") from e
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def optimize_inference(pipe: DiffusionPipeline) -> None:
    """Compile the U-Net for sampling: channels_last U-Net and VAE, each attention's
    projections fused into one matrix product, then torch.compile of the U-Net (in place:
    the module keeps its type, config and methods). On an H200 at Stable Diffusion 1.5
    size, 1.40x a plain diffusers pipeline's images/s after 42 s of compilation; the layout
    changes alone were slower (0.93x), so they come only with compilation (docs/bench-gpu).
    Call it after LoRA weights are loaded (fused projections take the weights as they are)."""
    pipe.unet.to(memory_format=torch.channels_last)
    if is_conditional(pipe):
        pipe.unet.fuse_qkv_projections()
        pipe.vae.to(memory_format=torch.channels_last)
    pipe.unet.compile()


def is_conditional(pipe: DiffusionPipeline) -> bool:
    """True for text-to-image pipelines, False for unconditional ones."""
    return isinstance(pipe, StableDiffusionPipeline)


def load_embeddings(pipe: StableDiffusionPipeline, paths: list[Path]) -> list[str]:
    """Load textual-inversion files into the pipeline's tokenizer and text encoder; return
    their tokens, in order, ready for any prompt (diffusers' encode_prompt expands a
    multi-vector token).

    Each file is a learned_embeds.safetensors in diffusers' format, {token: (n_vectors, D)}
    (`unsee invert` writes them). Load before encoding any prompt that uses the tokens.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tokens = []
    for path in paths:
        if not path.is_file():
            raise UnseeError(f"embedding file {path} does not exist")
        try:
            state = load_file(path)
        except SafetensorError as e:
            raise UnseeError(f"embedding file {path} is not a safetensors file: {e}") from None
        names = [k for k in state if k not in ("string_to_param", "emb_params")]
        if len(names) != 1:
            raise UnseeError(f"{path} holds {len(names)} tokens; give one token per file")
        token = names[0]
        dim = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
        if state[token].shape[-1] != dim:
            raise UnseeError(
                f"{path}: token {token!r} has {state[token].shape[-1]}-dim vectors; this"
                f" model's text encoder takes {dim}"
            )
        if token in pipe.tokenizer.get_vocab():
            raise UnseeError(
                f"{path}: token {token!r} is already in the tokenizer (a word of the model's"
                " vocabulary, or another --embedding file's token); rename the token"
            )
        try:
            pipe.load_textual_inversion(str(path))
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise UnseeError(f"could not load embedding {path}: {first}") from None
        tokens.append(token)
    return tokens
