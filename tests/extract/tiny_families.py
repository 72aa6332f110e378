"""Tiny random checkpoints of every supported VLM family, built from configs and saved to a folder.

Each builder makes a word-level tokenizer (the `tokenizers` library) holding the family's special tokens,
the family's real processor class with its PIL image processor, and a random model of a few layers
(text width 64), then saves both so that `load_adapter(folder)` loads them like a downloaded checkpoint.
No template file is written: the registry's own prompt template is used.
"""

from __future__ import annotations

import re

import torch

from .conftest import WORDS

HIDDEN = 64
LAYERS = 3


def tokenizer_for(template: str, specials=(), attributes=None, bos: str | None = "<s>", words=WORDS):
    """A word-level fast tokenizer: the template's words and special tokens, `specials`, and `attributes`
    (name -> token, e.g. boi_token) that processors read from the tokenizer."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    attributes = dict(attributes or {})
    marked = re.findall(r"<[^<>\s]+>|\[[A-Z_/]+\]", template)
    special = list(dict.fromkeys(["<pad>", "<unk>", *([bos] if bos else []), "</s>", *marked, *specials,
                                  *attributes.values()]))
    plain = re.sub(r"<[^<>\s]+>|\[[A-Z_/]+\]|\{question\}", " ", template)
    extra = re.findall(r"\w+|[^\w\s]", plain.lower())
    vocab = {token: index for index, token in enumerate(dict.fromkeys([*special, *words, *extra, "\n"]))}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        core.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                            special_tokens=[(bos, vocab[bos])])
    options = {"bos_token": bos} if bos else {}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="</s>", padding_side="left", model_max_length=4096,
                                        extra_special_tokens=attributes, **options)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in special if t not in attributes.values()
                                                                and t not in ("<pad>", "<unk>", "</s>", bos)]})
    return tokenizer


def bpe_tokenizer_for(template: str, specials=()):
    """A byte-level BPE tokenizer trained on the test words (families whose tokenizer class is fixed to
    BPE by transformers, e.g. Qwen3.5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .conftest import QUESTIONS

    special = list(dict.fromkeys(["<|endoftext|>", *re.findall(r"<\|[^<>\s]+\|>", template), *specials]))
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS)] * 3 + QUESTIONS + [" " + word for word in WORDS] + [template]
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   padding_side="left")


def _template(model_type: str) -> str:
    from pidcore.extract.families import FAMILIES

    return FAMILIES[model_type].prompt


def _llama_text(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, **extra)


def _qwen2_text(tokenizer):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)


def _siglip_vision(image_size=16, patch_size=4):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size)


def _image_only(processor_class, **parts):
    from pidcore.extract.adapters import image_only

    parts.pop("video_processor", None)
    return image_only(processor_class)(**parts)


def _save(folder, model_class, config, processor, prepare=None):
    torch.manual_seed(0)
    model = model_class(config).eval()
    if prepare is not None:
        prepare(model)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_llava_onevision(folder):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
    )

    tokenizer = tokenizer_for(_template("llava_onevision"), specials=["<video>"], bos=None)
    pinpoints = [[16, 16], [16, 32], [32, 16]]
    config = LlavaOnevisionConfig(
        vision_config=_siglip_vision(16, 8), text_config=_qwen2_text(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full", vision_feature_layer=-1)
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 16, "width": 16}, image_grid_pinpoints=pinpoints)
    processor = _image_only(LlavaOnevisionProcessor, image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=4,
                                        vision_feature_select_strategy="full")
    return _save(folder, LlavaOnevisionForConditionalGeneration, config, processor)


def _qwen_processor(model_type, tokenizer, processor_class, patch_size):
    from transformers import Qwen2VLImageProcessorPil

    pixels = (2 * patch_size * 2) ** 2  # a 2x2 grid of merged patches: 4 image tokens
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch_size, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": pixels, "longest_edge": pixels})
    return _image_only(processor_class, image_processor=image_processor, tokenizer=tokenizer)


QWEN_SPECIALS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _qwen_ids(tokenizer):
    ids = tokenizer.convert_tokens_to_ids
    return {"image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>")}


def build_qwen2_vl(folder):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer = tokenizer_for(_template("qwen2_vl"), specials=QWEN_SPECIALS, bos=None)
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=None)
    vision = dict(depth=1, embed_dim=32, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **_qwen_ids(tokenizer))
    processor = _qwen_processor("qwen2_vl", tokenizer, Qwen2VLProcessor, 4)
    return _save(folder, Qwen2VLForConditionalGeneration, config, processor)


def build_qwen2_5_vl(folder):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tokenizer = tokenizer_for(_template("qwen2_5_vl"), specials=QWEN_SPECIALS, bos=None)
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=2, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=16, fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                              **_qwen_ids(tokenizer))
    processor = _qwen_processor("qwen2_5_vl", tokenizer, Qwen2_5_VLProcessor, 4)
    return _save(folder, Qwen2_5_VLForConditionalGeneration, config, processor)


def build_qwen3_vl(folder):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    tokenizer = tokenizer_for(_template("qwen3_vl"), specials=QWEN_SPECIALS, bos=None)
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                 "mrope_interleaved": True},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=2, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                  deepstack_visual_indexes=[0])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **_qwen_ids(tokenizer))
    processor = _qwen_processor("qwen3_vl", tokenizer, Qwen3VLProcessor, 4)
    return _save(folder, Qwen3VLForConditionalGeneration, config, processor)


def build_qwen3_5(folder):
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3VLProcessor

    tokenizer = bpe_tokenizer_for(_template("qwen3_5"), specials=QWEN_SPECIALS)
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                layer_types=["linear_attention", "full_attention", "full_attention"],
                linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "mrope_interleaved": True, "partial_rotary_factor": 0.5},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=1, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16)
    config = Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=False, **_qwen_ids(tokenizer))
    processor = _qwen_processor("qwen3_5", tokenizer, Qwen3VLProcessor, 4)
    return _save(folder, Qwen3_5ForConditionalGeneration, config, processor)


def build_gemma3(folder):
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    attributes = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = tokenizer_for(_template("gemma3"), attributes=attributes, bos="<bos>")
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                sliding_window=8, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    config = Gemma3Config(text_config=text, vision_config=_siglip_vision(), mm_tokens_per_image=4,
                          boi_token_index=tokenizer.boi_token_id, eoi_token_index=tokenizer.eoi_token_id,
                          image_token_index=tokenizer.image_token_id, tie_word_embeddings=True)
    image_processor = Gemma3ImageProcessorPil(size={"height": 16, "width": 16})
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4)
    def random_projection(model):  # the projector's weight starts at 0: every image would look alike
        with torch.no_grad():
            model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.2)

    return _save(folder, Gemma3ForConditionalGeneration, config, processor, prepare=random_projection)


def build_paligemma(folder):
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    tokenizer = tokenizer_for(_template("paligemma"), attributes={"image_token": "<image>"}, bos="<bos>")
    text = GemmaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                       pad_token_id=tokenizer.pad_token_id)
    config = PaliGemmaConfig(text_config=text, vision_config=_siglip_vision(), projection_dim=HIDDEN,
                             hidden_size=HIDDEN, image_token_index=tokenizer.image_token_id,
                             vocab_size=len(tokenizer))
    image_processor = SiglipImageProcessorPil(size={"height": 16, "width": 16})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, PaliGemmaForConditionalGeneration, config, processor)


IDEFICS_SPECIALS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                    *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]]


def build_idefics3(folder):
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    tokenizer = tokenizer_for(_template("idefics3"), specials=IDEFICS_SPECIALS)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=4)
    config = Idefics3Config(text_config=_llama_text(tokenizer), vision_config=vision, scale_factor=2,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 16},
                                                do_image_splitting=True)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    return _save(folder, Idefics3ForConditionalGeneration, config, processor)


def build_smolvlm(folder):
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
    )

    from pidcore.extract.families import without_torchvision

    without_torchvision()
    tokenizer = tokenizer_for(_template("smolvlm"), specials=[*IDEFICS_SPECIALS, "<video>"])
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=4)
    config = SmolVLMConfig(text_config=_llama_text(tokenizer), vision_config=vision, scale_factor=2,
                           image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    image_processor = SmolVLMImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 16},
                                               do_image_splitting=True)
    processor = _image_only(SmolVLMProcessor, image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                                 image_seq_len=4)
    return _save(folder, SmolVLMForConditionalGeneration, config, processor)


def build_internvl(folder):
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
    )

    attributes = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                  "video_token": "<video>"}
    tokenizer = tokenizer_for(_template("internvl"), attributes=attributes, bos=None)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                  image_size=[16, 16], patch_size=[4, 4])
    config = InternVLConfig(text_config=_qwen2_text(tokenizer).to_dict() | {"model_type": "qwen2"},
                            vision_config=vision, image_token_id=tokenizer.context_image_token_id,
                            image_seq_length=4, downsample_ratio=0.5, tie_word_embeddings=False)
    image_processor = GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, crop_to_patches=False)
    processor = _image_only(InternVLProcessor, image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                                  image_seq_length=4)
    return _save(folder, InternVLForConditionalGeneration, config, processor)


def build_mistral3(folder):
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralImageProcessorPil,
        PixtralVisionConfig,
    )

    from pidcore.extract.adapters import processor_class_for
    from pidcore.extract.families import FAMILIES

    PixtralProcessor = processor_class_for(FAMILIES["mistral3"])  # noqa: N806

    tokenizer = tokenizer_for(_template("mistral3"), specials=["[IMG]", "[IMG_BREAK]", "[IMG_END]"])
    text = MistralConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, sliding_window=None)
    vision = PixtralVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                                 image_size=16, patch_size=4, head_dim=16)
    config = Mistral3Config(text_config=text, vision_config=vision, spatial_merge_size=2,
                            image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"), tie_word_embeddings=False)
    image_processor = PixtralImageProcessorPil(size={"longest_edge": 16}, patch_size=4)
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                                 spatial_merge_size=2)
    return _save(folder, Mistral3ForConditionalGeneration, config, processor)


def build_mllama(folder):
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
    )

    tokenizer = tokenizer_for(_template("mllama"), specials=["<|image|>", "<|python_tag|>"],
                              bos="<|begin_of_text|>")
    text = dict(vocab_size=len(tokenizer) + 8, hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                cross_attention_layers=[1], pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
                  image_size=16, patch_size=4, max_num_tiles=2, vision_output_dim=64, intermediate_layers_indices=[0],
                  supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])
    config = MllamaConfig(text_config=text, vision_config=vision,
                          image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"))
    image_processor = MllamaImageProcessorPil(size={"height": 16, "width": 16}, max_image_tiles=2)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    def open_gates(model):  # cross-attention gates start at 0 (tanh(0) = 0: no image); open them
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                    parameter.fill_(1.0)

    return _save(folder, MllamaForConditionalGeneration, config, processor, prepare=open_gates)


def build_phi4_multimodal(folder):
    from transformers import (
        Phi4MultimodalConfig,
        Phi4MultimodalFeatureExtractor,
        Phi4MultimodalForCausalLM,
        Phi4MultimodalProcessor,
    )

    from pidcore.extract.phi4_images import Phi4MultimodalImageProcessorPil

    tokenizer = tokenizer_for(_template("phi4_multimodal"), attributes={"image_token": "<|image|>",
                                                                         "audio_token": "<|audio|>"},
                              bos="<|endoftext|>")
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                original_max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0})
    # 16-pixel crops of 2-pixel patches: 8 x 8 patches, 4 x 4 image tokens per crop (real: 448 / 14, 16 x 16)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=16,
                  patch_size=2, crop_size=16, image_token_id=tokenizer.image_token_id)
    audio = dict(hidden_size=32, intermediate_size=48, num_blocks=1, num_attention_heads=2, ext_pw_out_channel=32,
                 depthwise_separable_out_channel=32, nemo_conv_channels=32, audio_token_id=tokenizer.audio_token_id)
    config = Phi4MultimodalConfig(**text, vision_config=vision, audio_config=audio)
    image_processor = Phi4MultimodalImageProcessorPil(size={"height": 16, "width": 16}, patch_size=2)
    processor = Phi4MultimodalProcessor(image_processor=image_processor, audio_processor=Phi4MultimodalFeatureExtractor(),
                                        tokenizer=tokenizer)

    def random_separators(model):  # the row and global separators start at 0
        with torch.no_grad():
            embedding = model.model.embed_tokens_extend.image_embed
            embedding.global_img_feature_extensor.normal_(0.0, 0.2)
            embedding.sub_img_feature_extensor.normal_(0.0, 0.2)

    return _save(folder, Phi4MultimodalForCausalLM, config, processor, prepare=random_separators)


def build_llama4(folder):
    from transformers import Llama4Config, Llama4ForConditionalGeneration, Llama4Processor

    from pidcore.extract.llama4_images import Llama4ImageProcessorPil

    specials = ["<|image|>", "<|image_start|>", "<|image_end|>", "<|patch|>", "<|tile_x_separator|>",
                "<|tile_y_separator|>"]
    tokenizer = tokenizer_for(_template("llama4"), specials=specials, bos="<|begin_of_text|>")
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, intermediate_size_mlp=96,
                num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                num_local_experts=2, num_experts_per_tok=1, interleave_moe_layer_step=2, max_position_embeddings=512,
                attention_chunk_size=16, no_rope_layers=[1, 1, 0], pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    # 16-pixel tiles of 4-pixel patches, pixel shuffle 0.5: 4 image tokens per tile (the vision MLP's input
    # is hidden / ratio^2 wide)
    vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=4, vision_output_dim=64, projector_input_dim=64, projector_output_dim=64,
                  pixel_shuffle_ratio=0.5)
    config = Llama4Config(text_config=text, vision_config=vision, tie_word_embeddings=False,
                          image_token_index=tokenizer.convert_tokens_to_ids("<|patch|>"))
    image_processor = Llama4ImageProcessorPil(size={"height": 16, "width": 16}, max_patches=4)
    processor = Llama4Processor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                                pixel_shuffle_ratio=0.5)
    return _save(folder, Llama4ForConditionalGeneration, config, processor)


def build_qwen3_vl_moe(folder):
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor

    tokenizer = tokenizer_for(_template("qwen3_vl_moe"), specials=QWEN_SPECIALS, bos=None)
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                 "mrope_interleaved": True},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=2, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                  deepstack_visual_indexes=[0])
    config = Qwen3VLMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                              **_qwen_ids(tokenizer))
    processor = _qwen_processor("qwen3_vl_moe", tokenizer, Qwen3VLProcessor, 4)
    return _save(folder, Qwen3VLMoeForConditionalGeneration, config, processor)


GLM_SPECIALS = ["<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>",
                "<|video|>"]


def build_glm4v(folder):
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessorPil,
        Glm4vProcessor,
    )

    tokenizer = tokenizer_for(_template("glm4v"), specials=GLM_SPECIALS, bos=None)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "partial_rotary_factor": 0.5},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=1, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  image_size=16, spatial_merge_size=2, temporal_patch_size=2)
    config = Glm4vConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                         image_token_id=ids("<|image|>"), video_token_id=ids("<|video|>"),
                         image_start_token_id=ids("<|begin_of_image|>"), image_end_token_id=ids("<|end_of_image|>"),
                         video_start_token_id=ids("<|begin_of_video|>"), video_end_token_id=ids("<|end_of_video|>"))
    pixels = (2 * 4 * 2) ** 2  # a 2x2 grid of merged patches: 4 image tokens
    image_processor = Glm4vImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                             size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = _image_only(Glm4vProcessor, image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, Glm4vForConditionalGeneration, config, processor)


AYA_SPECIALS = ["<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>",
                "TILE_GLOBAL", *[f"TILE_{i}" for i in range(1, 13)]]


def build_aya_vision(folder):
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        Cohere2Config,
        GotOcr2ImageProcessorPil,
    )

    tokenizer = tokenizer_for(_template("aya_vision"), specials=AYA_SPECIALS, bos="<BOS_TOKEN>")
    text = Cohere2Config(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96,
                         num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=512, sliding_window=8,
                         layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, logit_scale=1.0)
    config = AyaVisionConfig(vision_config=_siglip_vision(16, 4), text_config=text, downsample_factor=2,
                             image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
                             vision_feature_select_strategy="full", vision_feature_layer=-1)
    image_processor = GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, max_patches=4)  # tiles + global
    processor = AyaVisionProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4, img_size=16,
                                   downsample_factor=2)
    return _save(folder, AyaVisionForConditionalGeneration, config, processor)


LFM2_SPECIALS = ["<image>", "<|image_start|>", "<|image_end|>", "<|img_thumbnail|>",
                 *[f"<|img_row_{r}_col_{c}|>" for r in range(1, 4) for c in range(1, 4)]]


def build_lfm2_vl(folder):
    """A hybrid decoder: layer 0 is a short convolution, layers 1-2 attention (the knockout window)."""
    from transformers import Lfm2Config, Lfm2VlConfig, Lfm2VlForConditionalGeneration, Lfm2VlProcessor

    from pidcore.extract.lfm2_images import Lfm2VlImageProcessorPil

    tokenizer = tokenizer_for(_template("lfm2_vl"), specials=LFM2_SPECIALS, bos=None)
    text = Lfm2Config(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      layer_types=["conv", "full_attention", "full_attention"], block_auto_adjust_ff_dim=False,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.eos_token_id)
    vision = dict(model_type="siglip2_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                  num_attention_heads=2, patch_size=4, num_patches=16, vision_use_head=False)
    config = Lfm2VlConfig(vision_config=vision, text_config=text, downsample_factor=2, projector_hidden_size=48,
                          image_token_id=tokenizer.convert_tokens_to_ids("<image>"), tie_word_embeddings=False)
    # 4-pixel patches, 2x2 unshuffle: 16 x 16 pixels are 4 image tokens; an image over 1.0 x that area is
    # split into 16-pixel tiles (a 32 x 16 image: 2 tiles + a thumbnail)
    image_processor = Lfm2VlImageProcessorPil(encoder_patch_size=4, downsample_factor=2, min_image_tokens=2,
                                              max_image_tokens=4, tile_size=16, min_tiles=2, max_tiles=4,
                                              max_pixels_tolerance=1.0)
    processor = Lfm2VlProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, Lfm2VlForConditionalGeneration, config, processor)


def build_qwen3_5_moe(folder):
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration, Qwen3VLProcessor

    tokenizer = bpe_tokenizer_for(_template("qwen3_5_moe"), specials=QWEN_SPECIALS)
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                layer_types=["linear_attention", "full_attention", "full_attention"],
                linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "mrope_interleaved": True, "partial_rotary_factor": 0.5},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=1, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16)
    config = Qwen3_5MoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                              **_qwen_ids(tokenizer))
    processor = _qwen_processor("qwen3_5_moe", tokenizer, Qwen3VLProcessor, 4)
    return _save(folder, Qwen3_5MoeForConditionalGeneration, config, processor)


def build_glm4v_moe(folder):
    from transformers import (
        Glm4vImageProcessorPil,
        Glm4vMoeConfig,
        Glm4vMoeForConditionalGeneration,
        Glm4vProcessor,
    )

    tokenizer = tokenizer_for(_template("glm4v_moe"), specials=GLM_SPECIALS, bos=None)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                first_k_dense_replace=1,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "partial_rotary_factor": 0.5},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(depth=1, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2, patch_size=4,
                  image_size=16, spatial_merge_size=2, temporal_patch_size=2)
    config = Glm4vMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                            image_token_id=ids("<|image|>"), video_token_id=ids("<|video|>"),
                            image_start_token_id=ids("<|begin_of_image|>"), image_end_token_id=ids("<|end_of_image|>"),
                            video_start_token_id=ids("<|begin_of_video|>"), video_end_token_id=ids("<|end_of_video|>"))
    pixels = (2 * 4 * 2) ** 2
    image_processor = Glm4vImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                             size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = _image_only(Glm4vProcessor, image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, Glm4vMoeForConditionalGeneration, config, processor)


def build_vipllava(folder):
    from transformers import (
        CLIPImageProcessorPil,
        LlavaProcessor,
        VipLlavaConfig,
        VipLlavaForConditionalGeneration,
    )

    tokenizer = tokenizer_for(_template("vipllava"), specials=["<image>"])
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                  num_attention_heads=2, image_size=16, patch_size=4, projection_dim=32)
    config = VipLlavaConfig(vision_config=vision, text_config=_llama_text(tokenizer).to_dict() | {"model_type": "llama"},
                            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                            vision_feature_layers=[-2, -1], image_seq_length=16)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                               vision_feature_select_strategy="full", num_additional_image_tokens=0)
    return _save(folder, VipLlavaForConditionalGeneration, config, processor)


def build_idefics2(folder):
    from transformers import (
        Idefics2Config,
        Idefics2ForConditionalGeneration,
        Idefics2ImageProcessorPil,
        Idefics2Processor,
    )

    tokenizer = tokenizer_for(_template("idefics2"), specials=["<fake_token_around_image>", "<image>",
                                                               "<end_of_utterance>"])
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=4)
    perceiver = dict(hidden_size=HIDDEN, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                     resampler_head_dim=16, num_key_value_heads=2)
    text = _llama_text(tokenizer).to_dict() | {"model_type": "mistral", "sliding_window": None}
    config = Idefics2Config(text_config=text, vision_config=vision, perceiver_config=perceiver,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    image_processor = Idefics2ImageProcessorPil(size={"shortest_edge": 16, "longest_edge": 16},
                                                do_image_splitting=False)
    processor = Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    return _save(folder, Idefics2ForConditionalGeneration, config, processor)


def build_glm46v(folder):
    from transformers import (
        Glm46VConfig,
        Glm46VForConditionalGeneration,
        Glm46VImageProcessorPil,
        Glm46VProcessor,
    )

    tokenizer = tokenizer_for(_template("glm46v"), specials=GLM_SPECIALS, bos=None)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(model_type="glm4v_text", vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96,
                num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                 "partial_rotary_factor": 0.5},
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(model_type="glm4v_vision", depth=1, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN,
                  num_heads=2, patch_size=4, image_size=16, spatial_merge_size=2, temporal_patch_size=2)
    config = Glm46VConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                          image_token_id=ids("<|image|>"), video_token_id=ids("<|video|>"),
                          image_start_token_id=ids("<|begin_of_image|>"), image_end_token_id=ids("<|end_of_image|>"),
                          video_start_token_id=ids("<|begin_of_video|>"), video_end_token_id=ids("<|end_of_video|>"))
    pixels = (2 * 4 * 2) ** 2
    image_processor = Glm46VImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                              size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = _image_only(Glm46VProcessor, image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, Glm46VForConditionalGeneration, config, processor)


def build_deepseek_vl(folder):
    from transformers import (
        DeepseekVLConfig,
        DeepseekVLForConditionalGeneration,
        DeepseekVLImageProcessorPil,
        DeepseekVLProcessor,
    )

    tokenizer = tokenizer_for(_template("deepseek_vl"), attributes={"image_token": "<image_placeholder>"},
                              bos="<｜begin▁of▁sentence｜>")
    vision = _siglip_vision(16, 4).to_dict() | {"model_type": "siglip_vision_model"}
    config = DeepseekVLConfig(text_config=_llama_text(tokenizer).to_dict() | {"model_type": "llama"},
                              vision_config=vision, image_token_id=tokenizer.image_token_id,
                              tie_word_embeddings=False)
    image_processor = DeepseekVLImageProcessorPil(size={"height": 16, "width": 16}, min_size=4)
    processor = DeepseekVLProcessor(image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=16)
    return _save(folder, DeepseekVLForConditionalGeneration, config, processor)


def build_lighton_ocr(folder):
    from transformers import (
        LightOnOcrConfig,
        LightOnOcrForConditionalGeneration,
        LightOnOcrProcessor,
        PixtralImageProcessorPil,
    )

    attributes = {"image_token": "<|image_pad|>", "image_break_token": "<|vision_pad|>",
                  "image_end_token": "<|vision_end|>"}
    tokenizer = tokenizer_for(_template("lighton_ocr"), attributes=attributes, bos=None)
    text = dict(model_type="qwen3", vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96,
                num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=512, sliding_window=None, pad_token_id=tokenizer.pad_token_id,
                tie_word_embeddings=False)
    vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                  num_attention_heads=2, image_size=16, patch_size=4, head_dim=16)
    config = LightOnOcrConfig(text_config=text, vision_config=vision, spatial_merge_size=2,
                              image_token_id=tokenizer.image_token_id, tie_word_embeddings=False)
    image_processor = PixtralImageProcessorPil(size={"longest_edge": 16}, patch_size=4)
    processor = LightOnOcrProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                                    spatial_merge_size=2)
    return _save(folder, LightOnOcrForConditionalGeneration, config, processor)


def build_exaone4_5(folder):
    from transformers import Exaone4_5_Config, Exaone4_5_ForConditionalGeneration, Exaone4_5_Processor

    tokenizer = tokenizer_for(_template("exaone4_5"), specials=QWEN_SPECIALS, bos=None)
    text = dict(model_type="exaone4", vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96,
                num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=512, sliding_window=8,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.eos_token_id)
    vision = dict(depth=2, hidden_size=32, intermediate_size=48, out_hidden_size=HIDDEN, num_heads=2,
                  num_key_value_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                  fullatt_block_indexes=[1])
    ids = tokenizer.convert_tokens_to_ids
    config = Exaone4_5_Config(text_config=text, vision_config=vision, tie_word_embeddings=False,
                              image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"))
    processor = _qwen_processor("exaone4_5", tokenizer, Exaone4_5_Processor, 4)
    return _save(folder, Exaone4_5_ForConditionalGeneration, config, processor)


def build_qianfan_ocr(folder):
    from transformers import (
        GotOcr2ImageProcessorPil,
        QianfanOCRConfig,
        QianfanOCRForConditionalGeneration,
        QianfanOCRProcessor,
    )

    attributes = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
    tokenizer = tokenizer_for(_template("qianfan_ocr"), specials=["<image>"], attributes=attributes, bos=None)
    text = dict(model_type="qwen3", vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96,
                num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=512, sliding_window=None, pad_token_id=tokenizer.pad_token_id,
                tie_word_embeddings=False)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                  image_size=[16, 16], patch_size=[4, 4], drop_path_rate=0.0)
    config = QianfanOCRConfig(text_config=text, vision_config=vision, image_token_id=tokenizer.context_image_token_id,
                              image_seq_length=4, downsample_ratio=0.5, tie_word_embeddings=False)
    image_processor = GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, crop_to_patches=False)
    processor = QianfanOCRProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4)
    return _save(folder, QianfanOCRForConditionalGeneration, config, processor)


def build_paddleocr_vl(folder):
    from transformers import (
        PaddleOCRVLConfig,
        PaddleOCRVLForConditionalGeneration,
        PaddleOCRVLImageProcessorPil,
        PaddleOCRVLProcessor,
    )

    tokenizer = tokenizer_for(_template("paddleocr_vl"), attributes={"image_token": "<|IMAGE_PLACEHOLDER|>"},
                              specials=["<|IMAGE_START|>", "<|IMAGE_END|>", "<|VIDEO_PLACEHOLDER|>"], bos="<s>")
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=4, spatial_merge_size=2)
    config = PaddleOCRVLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                               image_token_id=tokenizer.image_token_id, video_token_id=ids("<|VIDEO_PLACEHOLDER|>"),
                               vision_start_token_id=ids("<|IMAGE_START|>"), vision_end_token_id=ids("<|IMAGE_END|>"))
    pixels = (2 * 4 * 2) ** 2
    image_processor = PaddleOCRVLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=1,
                                                   size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, PaddleOCRVLForConditionalGeneration, config, processor)


BUILDERS = {
    "llava_onevision": build_llava_onevision,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "gemma3": build_gemma3,
    "paligemma": build_paligemma,
    "idefics3": build_idefics3,
    "smolvlm": build_smolvlm,
    "internvl": build_internvl,
    "mistral3": build_mistral3,
    "mllama": build_mllama,
    "qwen3_5": build_qwen3_5,
    "phi4_multimodal": build_phi4_multimodal,
    "llama4": build_llama4,
    "qwen3_vl_moe": build_qwen3_vl_moe,
    "glm4v": build_glm4v,
    "aya_vision": build_aya_vision,
    "lfm2_vl": build_lfm2_vl,
    "qwen3_5_moe": build_qwen3_5_moe,
    "glm4v_moe": build_glm4v_moe,
    "vipllava": build_vipllava,
    "idefics2": build_idefics2,
    "glm46v": build_glm46v,
    "deepseek_vl": build_deepseek_vl,
    "lighton_ocr": build_lighton_ocr,
    "exaone4_5": build_exaone4_5,
    "qianfan_ocr": build_qianfan_ocr,
    "paddleocr_vl": build_paddleocr_vl,
}
