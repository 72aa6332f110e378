"""Model adapters: load a LLaVA-1.5 / LLaVA-1.6 checkpoint and turn questions into a padded batch.

The model-specific part is small: the model class, where the decoder layers live, and how images enter
the processor. Another Hugging Face vision-language model is one subclass away.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pidcore.revision import folder_revision  # torch-free; re-exported here

from .roles import BatchRoles, find_roles, question_flags

LLAVA_PROMPT = "USER: <image>\n{question} \nAnswer the question using a single word or phrase. ASSISTANT:"


class VLMAdapter:
    """A loaded model + processor with the prompt template and the model's identity."""

    model_type = ""

    def __init__(self, model, processor, *, name: str, revision: str, prompt_template: str):
        if "{question}" not in prompt_template or "<image>" not in prompt_template:
            raise ValueError(f"prompt template must contain '<image>' and '{{question}}': {prompt_template!r}")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.name = name
        self.revision = revision
        self.prompt_template = prompt_template

    # -- model-specific parts -------------------------------------------------------------------------
    @property
    def language_model(self):
        return self.model.model.language_model

    # -- shared ---------------------------------------------------------------------------------------
    @property
    def decoder_layers(self):
        return self.language_model.layers

    @property
    def final_norm(self):
        return self.language_model.norm

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def image_token_id(self) -> int:
        return self.model.config.image_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict:
        return {"name": self.name, "revision": self.revision, "num_layers": self.num_layers,
                "hidden_size": self.hidden_size}

    def prompt(self, question: str) -> tuple[str, tuple[int, int]]:
        """The filled template and the question's character span in it."""
        head, tail = self.prompt_template.split("{question}", 1)
        return head + question + tail.replace("{question}", ""), (len(head), len(head) + len(question))

    def answer_token_ids(self, answers: list[str]) -> list[int]:
        """The first token of each answer as it would follow the prompt."""
        ids = []
        for answer in answers:
            tokens = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            if not tokens:
                raise ValueError(f"answer {answer!r} has no tokens in this model's tokenizer")
            ids.append(tokens[0])
        return ids

    def encode(self, items) -> tuple[dict, BatchRoles]:
        """Model inputs (left-padded, position ids that skip padding) and the roles of every item."""
        prompts = [self.prompt(item.question) for item in items]
        images = [item.load_image() for item in items]
        batch = self.processor(images=images, text=[text for text, _ in prompts], return_tensors="pt",
                               padding=True)
        flags = [question_flags(self.tokenizer, text, span) for text, span in prompts]
        roles = find_roles(batch["input_ids"], batch["attention_mask"], self.image_token_id, flags)
        inputs = {key: value.to(self.device) for key, value in batch.items() if hasattr(value, "to")}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp_min(0)
        inputs["position_ids"] = positions.to(self.device)
        roles = BatchRoles(*(tensor.to(self.device) for tensor in
                             (roles.attention_mask, roles.image, roles.question, roles.answer_index)))
        return inputs, roles


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5: LlavaForConditionalGeneration."""

    model_type = "llava"


class LlavaNextAdapter(VLMAdapter):
    """LLaVA-1.6: LlavaNextForConditionalGeneration (any-resolution tiling: image token counts vary)."""

    model_type = "llava_next"


ADAPTERS = {adapter.model_type: adapter for adapter in (LlavaAdapter, LlavaNextAdapter)}
MODEL_CLASSES = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration"}


def _resolve(model: str) -> tuple[str, Path | None]:
    if model == "demo":
        from pidcore.demo import demo_model_path

        return "demo", demo_model_path()
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in model folder {path}")
        return model, path
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise FileNotFoundError(f"model {model!r} is neither 'demo', a local folder nor a Hugging Face id")
    return model, None


def load_adapter(model: str, *, dtype=None, device=None, attn_implementation=None) -> VLMAdapter:
    """Load "demo", a local folder or a Hugging Face id; bf16 on GPU and fp32 on CPU unless told."""
    import transformers

    name, folder = _resolve(model)
    source = str(folder) if folder is not None else model
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except OSError as error:  # not cached and no network, or not a model repository
        raise FileNotFoundError(f"cannot load model {model!r}: {error}") from error
    adapter_class = ADAPTERS.get(config.model_type)
    if adapter_class is None:
        raise ValueError(f"unsupported model type {config.model_type!r}; supported: {', '.join(ADAPTERS)}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    options = {"dtype": dtype}
    if attn_implementation:
        options["attn_implementation"] = attn_implementation
    model_class = getattr(transformers, MODEL_CLASSES[config.model_type])
    network = model_class.from_pretrained(source, **options).to(device)
    processor = transformers.AutoProcessor.from_pretrained(source)
    template = LLAVA_PROMPT
    if folder is not None:
        revision = folder_revision(folder)
        meta = folder / "pidflow.json"
        if meta.is_file():
            template = json.loads(meta.read_text()).get("prompt_template", LLAVA_PROMPT)
    else:
        revision = getattr(network.config, "_commit_hash", None) or "unknown"
    return adapter_class(network, processor, name=name, revision=revision, prompt_template=template)
