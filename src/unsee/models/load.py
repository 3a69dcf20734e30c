"""One loader for every command: `minisd`, a local diffusers folder, a hub id, or a
single-file checkpoint (.safetensors / .ckpt, the original Stability layout).

Supported: Stable Diffusion 1.x / 2.x (StableDiffusionPipeline), SDXL base
(StableDiffusionXLPipeline) and unconditional UNet2DModel pipelines (DDPMPipeline,
DDIMPipeline). Everything else is refused with a message naming what is supported.

SDXL's VAE overflows in fp16: as diffusers' SDXL pipeline does (its VAE config's
`force_upcast`), an fp16 SDXL pipeline keeps its VAE in fp32, and decoding casts the
latents to the VAE's dtype (sampling.loop.decode).
"""

import json
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from diffusers import (
    DDIMPipeline,
    DDPMPipeline,
    DiffusionPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

from unsee.errors import UnseeError
from unsee.models.text import SDXL_KEYS, text_encoders
from unsee.world.paths import MINISD_DIR

PIPELINES: dict[str, type[DiffusionPipeline]] = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
    "DDPMPipeline": DDPMPipeline,
    "DDIMPipeline": DDIMPipeline,
}
SUPPORTED = (
    "Stable Diffusion 1.x/2.x (StableDiffusionPipeline), SDXL base (StableDiffusionXLPipeline)"
    " and unconditional DDPM/DDIM"
)
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
# diffusers' names for the kinds of single-file checkpoint unsee loads
SINGLE_FILE_KINDS: dict[str, tuple[str, type[DiffusionPipeline]]] = {
    "v1": ("Stable Diffusion 1.x", StableDiffusionPipeline),
    "v2": ("Stable Diffusion 2.x", StableDiffusionPipeline),
    "xl_base": ("SDXL base", StableDiffusionXLPipeline),
}
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
            if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
                return str(path), single_file_index(path)
            raise UnseeError(
                f"model {model!r} is a file; expected a diffusers pipeline folder or a"
                f" single-file checkpoint ({', '.join(SINGLE_FILE_SUFFIXES)})"
            )
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


class _Shape:
    """A checkpoint entry's shape, without its data (what diffusers' detection reads)."""

    def __init__(self, shape) -> None:
        self.shape = torch.Size(shape)
        self.ndim = len(self.shape)


def _checkpoint_shapes(path: Path) -> dict:
    """{key: an object with .shape} of a single-file checkpoint, reading no weights
    (safetensors: the header; .ckpt: memory-mapped)."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                names = f.keys()  # a safe_open handle is not iterable
                return {k: _Shape(f.get_slice(k).get_shape()) for k in names}
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError:  # the legacy (not zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any reader's error: not a checkpoint unsee can read
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnseeError(f"could not read checkpoint {str(path)!r}: {first}") from None
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UnseeError(f"checkpoint {str(path)!r} holds no state dict")
    return {k: v for k, v in state.items() if hasattr(v, "shape")}


def single_file_index(path: Path) -> dict:
    """What a single-file checkpoint is, as a model_index.json-like dict: the pipeline
    class, and the hub repo whose diffusers configs (small JSON files) diffusers builds its
    components from. Refuses kinds unsee does not load, and files that are no checkpoint."""
    from diffusers.loaders.single_file_utils import (
        CHECKPOINT_KEY_NAMES,
        DIFFUSERS_DEFAULT_PIPELINE_PATHS,
        infer_diffusers_model_type,
    )

    shapes = _checkpoint_shapes(path)
    try:
        kind = infer_diffusers_model_type(shapes)
    except (KeyError, IndexError, AttributeError):
        kind = None
    # diffusers calls whatever it does not recognise "v1": check that it is one
    if kind == "v1" and CHECKPOINT_KEY_NAMES["v1"] not in shapes:
        kind = None
    if kind not in SINGLE_FILE_KINDS:
        what = f"a {kind!r} checkpoint" if kind else "not a checkpoint diffusers recognises"
        raise UnseeError(
            f"single file {str(path)!r} is {what}; unsee loads single files of"
            f" {', '.join(name for name, _ in SINGLE_FILE_KINDS.values())} (supported: {SUPPORTED})"
        )
    name, cls = SINGLE_FILE_KINDS[kind]
    repo = DIFFUSERS_DEFAULT_PIPELINE_PATHS[kind]["pretrained_model_name_or_path"]
    return {"_class_name": cls.__name__, "_single_file": {"kind": name, "config": repo}}


def _single_file_configs(model: str, info: dict) -> bool:
    """Make sure the diffusers configs a single file is built with are at hand; True when
    they come from the local cache (then nothing is downloaded)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = info["config"]
    try:
        hf_hub_download(repo, "model_index.json", local_files_only=True)
        return True
    except LocalEntryNotFoundError:
        pass
    try:
        _hub_model_index(repo)
    except UnseeError as e:
        raise UnseeError(
            f"{model!r} is a single-file {info['kind']} checkpoint; diffusers builds it with"
            f" the configs of {repo} (JSON files, no weights), and {e}"
        ) from None
    return False


def pipeline_class(model: str, index: dict) -> type[DiffusionPipeline]:
    name = index.get("_class_name", "")
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
    if cls is StableDiffusionXLPipeline:
        kwargs.update(add_watermarker=False)  # unsee's images are compared pixel for pixel
    single = index.get("_single_file")
    try:
        if single is None:
            pipe = cls.from_pretrained(source, **kwargs)
        else:
            cached = _single_file_configs(model, single)
            pipe = cls.from_single_file(
                source, config=single["config"], local_files_only=cached, **kwargs
            )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnseeError(f"could not load model {model!r}: {first}") from e
    pipe.to(dev)
    if is_sdxl(pipe) and pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast:
        pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16 (NaN, black images)
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
    return isinstance(pipe, StableDiffusionPipeline | StableDiffusionXLPipeline)


def is_sdxl(pipe: DiffusionPipeline) -> bool:
    """True for SDXL: two text encoders, pooled text and size conditioning of the U-Net."""
    return isinstance(pipe, StableDiffusionXLPipeline)


def load_embeddings(pipe: DiffusionPipeline, paths: list[Path]) -> list[str]:
    """Load textual-inversion files into the pipeline's tokenizers and text encoders; return
    their tokens, in order, ready for any prompt (diffusers' encode_prompt expands a
    multi-vector token).

    Stable Diffusion: a learned_embeds.safetensors in diffusers' format, {token: (n, D)}.
    SDXL: diffusers' SDXL layout, {"clip_l": (n, D1), "clip_g": (n, D2)}, one token with a
    vector in each text encoder; the token is the file's metadata "token" (`unsee invert`
    writes it), else its file name without the extension (as embedding sites name them).
    `unsee invert` writes both. Load before encoding any prompt that uses the tokens.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    sdxl = is_sdxl(pipe)
    tokens = []
    for path in paths:
        if not path.is_file():
            raise UnseeError(f"embedding file {path} does not exist")
        try:
            state = load_file(path)
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except SafetensorError as e:
            raise UnseeError(f"embedding file {path} is not a safetensors file: {e}") from None
        two = set(SDXL_KEYS) <= set(state)
        if sdxl and not two:
            raise UnseeError(
                f"{path} is a token for one text encoder (Stable Diffusion 1.x/2.x); an SDXL"
                f" token has a vector for each of its two ({', '.join(SDXL_KEYS)}): learn one"
                " on this model with `unsee invert`"
            )
        if two and not sdxl:
            raise UnseeError(
                f"{path} is an SDXL token ({', '.join(SDXL_KEYS)}: two text encoders); this"
                " model has one text encoder"
            )
        if sdxl:
            token = metadata.get("token") or path.name.removesuffix(".safetensors")
            vectors = [state[k] for k in SDXL_KEYS]
            if vectors[0].ndim != 2 or vectors[0].shape[0] != vectors[1].shape[0]:
                raise UnseeError(
                    f"{path}: clip_l and clip_g must hold the same number of vectors, as"
                    f" (n, dim); they are {tuple(vectors[0].shape)} and {tuple(vectors[1].shape)}"
                )
        else:
            names = [k for k in state if k not in ("string_to_param", "emb_params")]
            if len(names) != 1:
                raise UnseeError(f"{path} holds {len(names)} tokens; give one token per file")
            token = names[0]
            vectors = [state[token]]
        encoders = text_encoders(pipe)
        for (tokenizer, encoder), v, key in zip(encoders, vectors, SDXL_KEYS, strict=False):
            dim = encoder.get_input_embeddings().weight.shape[-1]
            which = f" ({key})" if sdxl else ""
            if v.shape[-1] != dim:
                raise UnseeError(
                    f"{path}: token {token!r}{which} has {v.shape[-1]}-dim vectors; this"
                    f" model's text encoder{which} takes {dim}"
                )
            if token in tokenizer.get_vocab():
                raise UnseeError(
                    f"{path}: token {token!r} is already in the tokenizer (a word of the"
                    " model's vocabulary, or another --embedding file's token); rename the token"
                )
        try:
            if sdxl:
                for (tokenizer, encoder), v in zip(encoders, vectors, strict=True):
                    pipe.load_textual_inversion(
                        v, token=token, tokenizer=tokenizer, text_encoder=encoder
                    )
            else:
                pipe.load_textual_inversion(str(path))
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise UnseeError(f"could not load embedding {path}: {first}") from None
        tokens.append(token)
    return tokens
