"""Tiny (and Stable Diffusion 1.5 / SDXL sized) randomly initialised pipelines built from
config.

They run every code path of a real Stable Diffusion, SDXL (or unconditional DDPM/DDIM)
pipeline in milliseconds: tests, `unsee bench generate` and the demo use them.
The text side uses the real CLIP tokenizer, so prompts tokenize as in Stable Diffusion.
"""

import torch
from diffusers import (
    AutoencoderKL,
    DDIMPipeline,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from unsee.world.paths import TOKENIZER_DIR


def tiny_sd_pipeline(seed: int = 0, image_size: int = 32) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline with ~2M parameters (VAE downsamples x2)."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=image_size,
    )
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_unconditional_pipeline(seed: int = 0, image_size: int = 16) -> DDIMPipeline:
    """An unconditional UNet2DModel + DDIM pipeline, the original censoring study's setting."""
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    return DDIMPipeline(unet=unet, scheduler=DDIMScheduler())


def sd15_sized_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """Randomly initialised components of Stable Diffusion 1.5's sizes (U-Net 860M, VAE 84M,
    CLIP ViT-L/14 text tower 123M), for speed and memory benchmarks where no weights can be
    downloaded. Build it under `with torch.device("cuda"):` to initialise on the GPU."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=768,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# SDXL base's scheduler_config.json: Euler, with the keys a DDIM scheduler made from it reads
SDXL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "sample_max_value": 1.0,
}
SDXL_VAE_SCALING = 0.13025  # SDXL's VAE scaling factor (SD 1.x/2.x: 0.18215)
SDXL_TIME_IDS = 6  # original size (2), crop top-left (2), target size (2)


def _sdxl_text_encoders(
    tokenizers: tuple[CLIPTokenizer, CLIPTokenizer], hidden, layers, heads, ffn, act
) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    """SDXL's two text towers: a CLIP text model (its penultimate layer feeds the U-Net) and
    a CLIP text model with projection (penultimate layer too, and its projected pooled
    output), of the given hidden sizes."""

    def config(i: int, **kw) -> CLIPTextConfig:
        tokenizer = tokenizers[i]
        return CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden[i],
            intermediate_size=ffn[i],
            num_hidden_layers=layers[i],
            num_attention_heads=heads[i],
            hidden_act=act[i],
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **kw,
        )

    return (
        CLIPTextModel(config(0, projection_dim=hidden[0])),
        CLIPTextModelWithProjection(config(1, projection_dim=hidden[1])),
    )


def _sdxl_tokenizers() -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """The CLIP tokenizer twice, the second padding with "!" as SDXL's tokenizer_2 does."""
    return (
        CLIPTokenizer.from_pretrained(TOKENIZER_DIR),
        CLIPTokenizer.from_pretrained(TOKENIZER_DIR, pad_token="!"),
    )


def tiny_sdxl_pipeline(seed: int = 0, image_size: int = 32) -> StableDiffusionXLPipeline:
    """A StableDiffusionXLPipeline with ~3M parameters (VAE downsamples x2): two text
    encoders of different widths (hidden sizes 32 and 48, the second with a 48-dim
    projection; different, so a mix-up of the two shows), a U-Net with SDXL's "text_time"
    added conditioning reading both (80-dim token states), SDXL's Euler schedule and VAE
    scaling factor."""
    torch.manual_seed(seed)
    hidden, time_dim = (32, 48), 8
    tokenizer, tokenizer_2 = _sdxl_tokenizers()
    text_encoder, text_encoder_2 = _sdxl_text_encoders(
        (tokenizer, tokenizer_2),
        hidden,
        layers=(2, 2),
        heads=(4, 4),
        ffn=(64, 64),
        act=("quick_gelu", "gelu"),
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=sum(hidden),  # both encoders' token embeddings, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # the pooled text embedding and the six micro-conditioning numbers' embeddings
        projection_class_embeddings_input_dim=SDXL_TIME_IDS * time_dim + hidden[1],
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=image_size,
        scaling_factor=SDXL_VAE_SCALING,
        force_upcast=True,
    )
    return _sdxl_pipeline(vae, (text_encoder, text_encoder_2), (tokenizer, tokenizer_2), unet)


def sdxl_sized_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """Randomly initialised components of SDXL base 1.0's sizes (U-Net 2.6B, VAE 84M, CLIP
    ViT-L/14 text tower 123M, OpenCLIP ViT-bigG/14 text tower 695M), for speed and memory
    benchmarks where no weights can be downloaded. Build it under `with torch.device(...)`
    (a GPU, or "meta" for shapes alone): it is 3.5B parameters, 14 GB in fp32."""
    torch.manual_seed(seed)
    hidden = (768, 1280)
    tokenizer, tokenizer_2 = _sdxl_tokenizers()
    text_encoder, text_encoder_2 = _sdxl_text_encoders(
        (tokenizer, tokenizer_2),
        hidden,
        layers=(12, 32),
        heads=(12, 20),
        ffn=(3072, 5120),
        act=("quick_gelu", "gelu"),
    )
    unet = UNet2DConditionModel(
        sample_size=128,
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20),
        transformer_layers_per_block=(1, 2, 10),
        use_linear_projection=True,
        cross_attention_dim=sum(hidden),  # 2048
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=SDXL_TIME_IDS * 256 + hidden[1],  # 2816
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=1024,
        scaling_factor=SDXL_VAE_SCALING,
        force_upcast=True,
    )
    return _sdxl_pipeline(vae, (text_encoder, text_encoder_2), (tokenizer, tokenizer_2), unet)


def _sdxl_pipeline(vae, encoders, tokenizers, unet) -> StableDiffusionXLPipeline:
    """The SDXL pipeline of these parts, with SDXL base's Euler schedule."""
    with torch.device("cpu"):  # the scheduler keeps its tables on the host
        scheduler = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=encoders[0], text_encoder_2=encoders[1], tokenizer=tokenizers[0],
        tokenizer_2=tokenizers[1], unet=unet, scheduler=scheduler, add_watermarker=False,
    )  # fmt: skip
