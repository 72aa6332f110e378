"""The declarative registry of vision-language model families (torch-free, so listings stay light).

A family is data: the transformers class, where the decoder lives, the image placeholder the prompt
carries, how the processor takes images, input keys to drop, whether the model builds its own positions,
how images reach the decoder (in-sequence tokens, a bidirectional prefix, or cross-attention) and a default
prompt template. `load_adapter` picks the family by the checkpoint config's `model_type`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .edges import EDGES

LLAVA_PROMPT = "USER: <image>\n{question} \nAnswer the question using a single word or phrase. ASSISTANT:"
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
CHATML = "<|im_start|>user\n{image}{question}" + SHORT_ANSWER + "<|im_end|>\n<|im_start|>assistant\n"

CAUSAL_EDGES = ("image->question", "image->last", "question->last", "last->last")


@dataclass(frozen=True)
class Family:
    """How pidflow drives one transformers model family (see docs/extraction.md, "Families")."""

    model_type: str  # config.model_type
    label: str  # human name
    model_class: str  # transformers class
    prompt: str  # default template: contains `image_token` and "{question}"
    image_token: str = "<image>"  # the placeholder in the prompt (the processor expands it)
    decoder: str = "model.language_model"  # attribute path from the loaded model to the decoder (its .layers)
    final_norm: str = "norm"  # attribute path from the decoder to its final norm (the last pooled layer's output)
    attention_modules: tuple[str, ...] = ("self_attn",)  # decoder-layer attributes holding attention that the
    # knockout's mask edits; a layer with none of them (a recurrent linear-attention state, a short convolution)
    # is refused for knockouts (found on the loaded model by what each layer holds)
    unmaskable_layer_types: tuple[str, ...] = ()  # the config's `layer_types` entries of such layers, for
    # describing a checkpoint from its config alone (no weights)
    images: str = "flat"  # "flat": images=[img, ...]; "nested": images=[[img], ...]
    drop_keys: tuple[str, ...] = ()  # processor outputs the forward must not get
    own_positions: bool = False  # the model builds its positions (M-RoPE): pidflow passes no position_ids
    first_position: int = 0  # the model's position of the first token (PaliGemma counts from 1)
    attention: str = "causal"  # "causal"; "prefix" (image + prompt attend bidirectionally); "cross"
    variable_image_tokens: bool = False  # the image-token count depends on the image's size (tiling, native res)
    processor: str = ""  # module:class of the processor when transformers' top-level name is unusable
    bidirectional: tuple[str, ...] = ()  # vision attention classes transformers marks causal by mistake (see below)
    model_fix: str = ""  # module:function applied to the loaded model, for a transformers bug (see its docstring)
    notes: str = ""  # what the adapter needed, for the docs and the model list

    @property
    def edges(self) -> tuple[str, ...]:
        """Knockout edges this family supports."""
        if self.attention == "prefix":
            return (*CAUSAL_EDGES, "question->image")
        return CAUSAL_EDGES

    @property
    def vision_source(self) -> str:
        """Where X_vision is read: hidden states at the image positions, or the projected cross-attention
        states (constant over depth: the image never enters the residual stream)."""
        return "cross_attention_states" if self.attention == "cross" else "image_positions"


def _chatml(image: str) -> str:
    return CHATML.replace("{image}", image)


_QWEN = dict(image_token="<|image_pad|>", own_positions=True, variable_image_tokens=True,
             prompt=_chatml("<|vision_start|><|image_pad|><|vision_end|>"))
_GLM_PROMPT = ("[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>{question}" + SHORT_ANSWER
               + "<|assistant|>\n")
_IDEFICS = dict(images="nested", decoder="model.text_model", variable_image_tokens=True,
                prompt="User:<image>{question}" + SHORT_ANSWER + "<end_of_utterance>\nAssistant:")

FAMILIES: dict[str, Family] = {family.model_type: family for family in (
    Family("llava", "LLaVA-1.5", "LlavaForConditionalGeneration", LLAVA_PROMPT),
    Family("llava_next", "LLaVA-NeXT (1.6)", "LlavaNextForConditionalGeneration", LLAVA_PROMPT,
           variable_image_tokens=True, notes="any-resolution tiling: image-token counts depend on the image shape"),
    Family("llava_onevision", "LLaVA-OneVision", "LlavaOnevisionForConditionalGeneration",
           "<|im_start|>user <image>\n{question}" + SHORT_ANSWER + "<|im_end|><|im_start|>assistant\n",
           variable_image_tokens=True, notes="any-resolution tiling (anyres_max_9)"),
    Family("qwen2_vl", "Qwen2-VL", "Qwen2VLForConditionalGeneration", **_QWEN,
           notes="3-D M-RoPE: the model builds its own positions from the image grid"),
    Family("qwen2_5_vl", "Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration", **_QWEN,
           notes="3-D M-RoPE: the model builds its own positions from the image grid"),
    Family("qwen3_vl", "Qwen3-VL", "Qwen3VLForConditionalGeneration", **_QWEN,
           notes="interleaved 3-D M-RoPE built by the model; DeepStack adds image features after early layers"),
    Family("qwen3_5", "Qwen3.5 (hybrid linear attention)", "Qwen3_5ForConditionalGeneration", **_QWEN,
           unmaskable_layer_types=("linear_attention",),
           notes="Gated-DeltaNet layers keep a recurrent state: knockouts refused on those layers"),
    Family("qwen3_vl_moe", "Qwen3-VL-MoE", "Qwen3VLMoeForConditionalGeneration", **_QWEN,
           notes="as Qwen3-VL with mixture-of-experts MLPs"),
    Family("qwen3_5_moe", "Qwen3.5-MoE (hybrid linear attention)", "Qwen3_5MoeForConditionalGeneration", **_QWEN,
           unmaskable_layer_types=("linear_attention",),
           notes="as Qwen3.5 with mixture-of-experts MLPs: knockouts refused on Gated-DeltaNet layers"),
    Family("glm4v_moe", "GLM-4.5V (MoE)", "Glm4vMoeForConditionalGeneration", _GLM_PROMPT, image_token="<|image|>",
           own_positions=True, variable_image_tokens=True, notes="as GLM-4.1V with mixture-of-experts MLPs"),
    Family("glm46v", "GLM-4.6V", "Glm46VForConditionalGeneration", _GLM_PROMPT, image_token="<|image|>",
           own_positions=True, variable_image_tokens=True, notes="as GLM-4.1V (its text model) with its own processor"),
    Family("deepseek_vl", "DeepSeek-VL", "DeepseekVLForConditionalGeneration",
           "You are a helpful language and vision assistant.\n\nUser: <image_placeholder>{question}" + SHORT_ANSWER
           + "\n\nAssistant:", image_token="<image_placeholder>",
           notes="placeholder <image_placeholder> expands to a fixed number of image tokens (SigLIP + aligner)"),
    Family("lighton_ocr", "LightOnOCR", "LightOnOcrForConditionalGeneration", _chatml("<|image_pad|>"),
           image_token="<|image_pad|>", variable_image_tokens=True,
           notes="Pixtral vision (rows of image tokens, a break token after each row, an end token) with a Qwen3 "
                 "decoder; an OCR model: its answers are page transcriptions"),
    Family("exaone4_5", "EXAONE 4.5", "Exaone4_5_ForConditionalGeneration",
           "[|user|]<|vision_start|><|image_pad|><|vision_end|>{question}" + SHORT_ANSWER + "[|endofturn|]\n[|assistant|]",
           image_token="<|image_pad|>", variable_image_tokens=True,
           notes="Qwen2.5-VL-style windowed vision tower with an EXAONE 4 decoder (sliding and full layers, 1-D positions)"),
    Family("qianfan_ocr", "Qianfan-OCR", "QianfanOCRForConditionalGeneration", _chatml("<image>\n"),
           variable_image_tokens=True,
           notes="InternVL-style: placeholder <image> expands to <img> <IMG_CONTEXT> tokens </img>; Qwen3 decoder; "
                 "an OCR model"),
    Family("paddleocr_vl", "PaddleOCR-VL", "PaddleOCRVLForConditionalGeneration",
           "User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>{question}" + SHORT_ANSWER + "\nAssistant: ",
           image_token="<|IMAGE_PLACEHOLDER|>", own_positions=True, variable_image_tokens=True,
           notes="3-D M-RoPE built by the model from the image grid (NaViT-style vision, Ernie-4.5 decoder); "
                 "an OCR model"),
    Family("vipllava", "ViP-LLaVA", "VipLlavaForConditionalGeneration",
           "A chat between a curious human and an artificial intelligence assistant.###Human: <image>\n{question}"
           + SHORT_ANSWER + "###Assistant:",
           notes="LLaVA with image features from several vision layers"),
    Family("idefics2", "Idefics2", "Idefics2ForConditionalGeneration", **_IDEFICS,
           notes="decoder at model.text_model; a perceiver resampler gives a fixed number of image tokens"),
    Family("glm4v", "GLM-4.1V", "Glm4vForConditionalGeneration",
           _GLM_PROMPT, image_token="<|image|>", own_positions=True, variable_image_tokens=True,
           notes="3-D M-RoPE built by the model from the image grid; native-resolution patches"),
    Family("aya_vision", "Aya Vision", "AyaVisionForConditionalGeneration",
           "<|START_OF_TURN_TOKEN|><|USER_TOKEN|><image>{question}" + SHORT_ANSWER
           + "<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", variable_image_tokens=True,
           notes="placeholder <image> expands to <|START_OF_IMG|>, tiles of <|IMG_PATCH|> tokens and a global "
                 "tile, <|END_OF_IMG|>; image features at <|IMG_PATCH|> (Cohere2 decoder, pixel-shuffled SigLIP)"),
    Family("lfm2_vl", "LFM2-VL", "Lfm2VlForConditionalGeneration",
           "<|startoftext|><|im_start|>user\n<image>{question}" + SHORT_ANSWER + "<|im_end|>\n<|im_start|>assistant\n",
           images="nested", variable_image_tokens=True, final_norm="embedding_norm", unmaskable_layer_types=("conv",),
           notes="hybrid LFM2 decoder: gated short-convolution layers (no attention: knockouts refused on them) "
                 "between attention layers; final norm named embedding_norm; SigLIP2 NaFlex tiles + thumbnail, "
                 "pixel-unshuffled; PIL image processor by pidflow"),
    Family("gemma3", "Gemma 3", "Gemma3ForConditionalGeneration",
           "<start_of_turn>user\n<start_of_image>{question}" + SHORT_ANSWER + "<end_of_turn>\n<start_of_turn>model\n",
           image_token="<start_of_image>", images="nested",
           notes="placeholder <start_of_image> expands to <boi> soft tokens <eoi>; image tokens attend "
                 "bidirectionally within the image"),
    Family("paligemma", "PaliGemma", "PaliGemmaForConditionalGeneration", "<image>answer en {question}",
           drop_keys=("labels",), first_position=1, attention="prefix",
           notes="prefix-LM: image and prompt attend bidirectionally, so the vision source already carries "
                 "question information; positions count from 1; BOS after the image"),
    Family("idefics3", "Idefics3", "Idefics3ForConditionalGeneration", **_IDEFICS,
           notes="decoder at model.text_model; tiles with <row_i_col_j> and <global-img> tokens"),
    Family("smolvlm", "SmolVLM", "SmolVLMForConditionalGeneration", **_IDEFICS,
           notes="as Idefics3; num2words is needed only for video prompts"),
    Family("internvl", "InternVL", "InternVLForConditionalGeneration", _chatml("<IMG_CONTEXT>\n"),
           image_token="<IMG_CONTEXT>", variable_image_tokens=True, notes="placeholder <IMG_CONTEXT> expands to <img> soft tokens </img>"),
    Family("mistral3", "Mistral 3 (Pixtral vision)", "Mistral3ForConditionalGeneration",
           "[INST][IMG]{question}" + SHORT_ANSWER + "[/INST]", image_token="[IMG]",
           processor="transformers.models.pixtral.processing_pixtral:PixtralProcessor",
           variable_image_tokens=True, notes="Pixtral-style rows: [IMG_BREAK] after each row and [IMG_END]; needs image_sizes"),
    Family("phi4_multimodal", "Phi-4 multimodal", "Phi4MultimodalForCausalLM",
           "<|user|><|image|>{question}" + SHORT_ANSWER + "<|end|><|assistant|>", image_token="<|image|>",
           decoder="model", variable_image_tokens=True, bidirectional=("Phi4MultimodalVisionAttention",),
           notes="decoder is the causal LM's own model (image features are written into its input embeddings); "
                 "image token id in vision_config; its SigLIP vision attention is flagged causal in transformers 5.24 "
                 "(sdpa then attends causally over unpadded crops, eager does not): pidflow clears the flag; HD crops + a global view with row separators; PIL image "
                 "processor by pidflow (transformers has only a torchvision one)"),
    Family("llama4", "Llama 4", "Llama4ForConditionalGeneration",
           "<|header_start|>user<|header_end|>\n\n<|image|>{question}" + SHORT_ANSWER
           + "<|eot|><|header_start|>assistant<|header_end|>\n\n",
           image_token="<|image|>", decoder="language_model.model", variable_image_tokens=True,
           model_fix="pidcore.extract.llama4_images:fix_output",
           notes="placeholder <|image|> expands to <|image_start|>, tiles of <|patch|> tokens with tile separators, "
                 "<|image|> and the global tile's patches, <|image_end|>; image features at <|patch|>; "
                 "PIL image processor by pidflow; forward's output bug shimmed (fix_output)"),
    Family("mllama", "Llama 3.2 Vision (Mllama)", "MllamaForConditionalGeneration",
           "<|start_header_id|>user<|end_header_id|>\n\n<|image|>{question}" + SHORT_ANSWER
           + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
           image_token="<|image|>", images="nested", attention="cross", attention_modules=("self_attn", "cross_attn"),
           notes="the image enters only through cross-attention layers: the vision source is the projected "
                 "cross-attention states; image knockouts act on the cross-attention layers"),
)}


UNSUPPORTED: dict[str, str] = {
}


def family_for(model_type: str) -> Family:
    """The registered family of a config's model_type, or a ValueError listing the supported ones."""
    family = FAMILIES.get(model_type)
    if model_type in UNSUPPORTED:
        raise ValueError(f"model type {model_type!r} is not supported: {UNSUPPORTED[model_type]}")
    if family is None:
        raise ValueError(f"unsupported model type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}")
    return family


def describe_config(config: dict) -> dict:
    """What pidflow supports for a checkpoint, from its config.json as a dict (no weights, no torch):
    family, decoder layers, knockout edges, where the vision source is read, and layers with special
    attention. Unsupported model types say why in `unsupported`."""
    model_type = config.get("model_type", "")
    text = config.get("text_config") or config
    layers = text.get("num_hidden_layers")
    facts = {"model_type": model_type, "num_layers": int(layers) if layers is not None else None}
    try:
        family = family_for(model_type)
    except ValueError as error:
        return {**facts, "family": None, "knockout_edges": [], "unsupported": str(error)}
    types = text.get("layer_types") or ()
    unmaskable = [{"layer": index, "kind": str(kind)} for index, kind in enumerate(types)
                  if kind in family.unmaskable_layer_types]
    return {**facts, "family": family.label, "attention": family.attention, "vision_source": family.vision_source,
            "knockout_edges": list(family.edges),
            "linear_attention_layers": [entry["layer"] for entry in unmaskable],  # (name kept for old readers)
            "unmaskable_layers": unmaskable,
            "cross_attention_layers": list(text.get("cross_attention_layers") or [])
            if family.attention == "cross" else []}


def smolvlm_without_num2words() -> None:
    """SmolVLM's processor refuses to start without `num2words`, which it uses only to word video frame
    counts; pidflow sends images only, so a plain str() stands in when the package is missing."""
    from transformers.models.smolvlm import processing_smolvlm

    if not processing_smolvlm.num2words:
        processing_smolvlm.num2words = str


def pixtral_without_torchvision() -> None:
    """transformers' PixtralProcessor imports one size helper from the torchvision image-processor module;
    the PIL module defines the same function. Without torchvision, let that import find the PIL one."""
    import importlib.util
    import sys

    name = "transformers.models.pixtral.image_processing_pixtral"
    if name in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    from transformers.models.pixtral import image_processing_pil_pixtral

    sys.modules[name] = image_processing_pil_pixtral


def phi4_without_torchvision() -> None:
    """Phi-4 multimodal's image processor exists only as a torchvision build; pidflow's PIL one stands in."""
    from .phi4_images import register

    register()


def lfm2_without_torchvision() -> None:
    """LFM2-VL's image processor exists only as a torchvision build; pidflow's PIL one stands in."""
    from .lfm2_images import register

    register()


def llama4_without_torchvision() -> None:
    """Llama 4's image processor exists only as a torchvision build; pidflow's PIL one stands in."""
    from .llama4_images import register

    register()


def without_torchvision() -> None:
    """The stand-ins above, for processors whose image path needs no torchvision."""
    smolvlm_without_num2words()
    pixtral_without_torchvision()
    phi4_without_torchvision()
    llama4_without_torchvision()
    lfm2_without_torchvision()


assert all(edge in EDGES for family in FAMILIES.values() for edge in family.edges)
