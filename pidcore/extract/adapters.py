"""Model adapters: load any registered VLM family and turn questions into a padded batch.

Everything family-specific is data in `families.FAMILIES`; `VLMAdapter` reads it. A new family is a
declaration there plus a tiny-model test (tests/extract/tiny_families.py).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import reduce
from pathlib import Path

import torch

from pidcore.revision import folder_revision  # torch-free; re-exported here

from .families import FAMILIES, LLAVA_PROMPT, Family, family_for, without_torchvision
from .loading import QUANTIZATIONS
from .roles import BatchRoles, find_roles, question_flags

__all__ = ["LLAVA_PROMPT", "VLMAdapter", "LlavaAdapter", "LlavaNextAdapter", "load_adapter", "folder_revision"]

_MASKABLE = ("eager", "sdpa")


class VLMAdapter:
    """A loaded model + processor with its family, prompt template and identity."""

    model_type = ""

    def __init__(self, model, processor, *, name: str, revision: str, prompt_template: str,
                 family: Family | None = None):
        self.family = family or family_for(self.model_type or model.config.model_type)
        placeholder = self.family.image_token
        if "{question}" not in prompt_template or placeholder not in prompt_template:
            raise ValueError(f"prompt template must contain {placeholder!r} and '{{question}}': {prompt_template!r}")
        self.model = model.eval()
        for module in model.modules():  # a bidirectional encoder: sdpa must not infer a causal mask
            if type(module).__name__ in self.family.bidirectional:
                module.is_causal = False
        if self.family.model_fix:
            import importlib

            module_name, function = self.family.model_fix.split(":")
            getattr(importlib.import_module(module_name), function)(model)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.name = name
        self.revision = revision
        self.prompt_template = prompt_template

    # -- structure, read from the family ---------------------------------------------------------------
    @property
    def language_model(self):
        return reduce(getattr, self.family.decoder.split("."), self.model)

    @property
    def decoder_layers(self):
        return self.language_model.layers

    @property
    def final_norm(self):
        """The decoder's final norm (the family's `final_norm` path): its output is the last pooled layer."""
        return reduce(getattr, self.family.final_norm.split("."), self.language_model)

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def text_config(self):
        return self.model.config.get_text_config()

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def image_token_id(self) -> int:
        """The id whose positions hold image features (or, for cross-attention models, the placeholder)."""
        for config in (self.model.config, getattr(self.model.config, "vision_config", None)):  # Phi-4: vision
            for name in ("image_token_id", "image_token_index"):
                value = getattr(config, name, None)
                if isinstance(value, int):
                    return value
        raise ValueError(f"{self.family.label}: the config names no image token id")

    @property
    def cross_attention_layers(self) -> tuple[int, ...]:
        """Decoder layers that attend to the image through cross-attention (Mllama)."""
        return tuple(getattr(self.text_config, "cross_attention_layers", None) or ()) \
            if self.family.attention == "cross" else ()

    @property
    def unmaskable_layers(self) -> dict[int, str]:
        """Decoder layers that hold none of the family's `attention_modules` (a recurrent linear-attention
        state, a short convolution), which no attention mask can edit: layer -> what mixes its tokens."""
        found = {}
        for index, layer in enumerate(self.decoder_layers):
            if not any(isinstance(getattr(layer, name, None), torch.nn.Module) for name in self.family.attention_modules):
                found[index] = token_mixer(layer)
        return found

    @property
    def linear_attention_layers(self) -> tuple[int, ...]:
        """The unmaskable layers' indices (the name older readers of `describe()` know)."""
        return tuple(self.unmaskable_layers)

    @property
    def attention_implementation(self) -> str:
        return str(getattr(self.text_config, "_attn_implementation", None)
                   or getattr(self.model.config, "_attn_implementation", None) or "eager")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict:
        return {"name": self.name, "revision": self.revision, "num_layers": self.num_layers,
                "hidden_size": self.hidden_size, "family": self.family.label, "model_type": self.family.model_type,
                "attention": self.family.attention, "vision_source": self.family.vision_source,
                "knockout_edges": list(self.family.edges),
                "linear_attention_layers": list(self.linear_attention_layers),
                "unmaskable_layers": [{"layer": index, "kind": kind} for index, kind in self.unmaskable_layers.items()],
                "cross_attention_layers": list(self.cross_attention_layers)}

    # -- knockouts ---------------------------------------------------------------------------------------
    def check_knockout(self, knockout) -> None:
        """A clear ValueError for knockouts this model cannot apply faithfully."""
        knockout.check(self.num_layers)
        unsupported = [edge for edge in knockout.edges if edge not in self.family.edges]
        if unsupported:
            raise ValueError(f"{self.family.label} does not support knockout edge(s) {unsupported}: "
                             f"supported: {', '.join(self.family.edges)}"
                             + ("; question->image exists only in prefix-LM models, where image tokens attend to "
                                "the prompt" if "question->image" in unsupported else ""))
        if not knockout.edges:
            return
        implementation = self.attention_implementation
        if implementation not in _MASKABLE:
            raise ValueError(f"knockouts edit the 4-D attention mask, which attn_implementation={implementation!r} "
                             f"cannot take; load the model with attn_implementation='eager' or 'sdpa'")
        first, last = knockout.layers
        unmaskable = self.unmaskable_layers
        inside = [index for index in unmaskable if first <= index <= last]
        if inside:
            full = [index for index in range(self.num_layers) if index not in unmaskable]
            kinds = ", ".join(f"{index} ({unmaskable[index]})" for index in inside)
            raise ValueError(f"knockout window {list(knockout.layers)} includes decoder layers without attention of this "
                             f"hybrid decoder: {kinds}; an attention mask cannot block a recurrent state or a "
                             f"convolution. Choose a window of attention layers only: {full}")

    @contextmanager
    def knockout_applied(self, knockout):
        """Knockout hooks for this model (checked first); yields `set_roles(roles)` per batch."""
        self.check_knockout(knockout)
        with knockout.applied(self.decoder_layers, self.dtype, cross_attention_layers=self.cross_attention_layers,
                              causal_when_missing=self.family.attention != "prefix") as set_roles:
            yield set_roles

    # -- prompts and batches ---------------------------------------------------------------------------
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

    def processor_inputs(self, texts: list[str], images: list) -> dict:
        """The processor's own outputs for these prompts (what the model's own forward takes)."""
        images = [[image] for image in images] if self.family.images == "nested" else images
        batch = self.processor(images=images, text=texts, return_tensors="pt", padding=True)
        return {key: value for key, value in batch.items() if key not in self.family.drop_keys}

    def encode(self, items) -> tuple[dict, BatchRoles]:
        """Model inputs (left-padded, position ids that skip padding unless the model builds its own) and
        the roles of every item."""
        prompts = [self.prompt(item.question) for item in items]
        images = [item.load_image() for item in items]
        batch = self.processor_inputs([text for text, _ in prompts], images)
        flags = [question_flags(self.tokenizer, text, span) for text, span in prompts]
        roles = find_roles(batch["input_ids"], batch["attention_mask"], self.image_token_id, flags)
        inputs = {}
        for key, value in batch.items():
            if hasattr(value, "to"):
                value = value.to(self.device)
                inputs[key] = value.to(self.dtype) if value.is_floating_point() else value
        if not self.family.own_positions:
            positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp_min(0) + self.family.first_position
            inputs["position_ids"] = positions.to(self.device)
        roles = BatchRoles(*(tensor.to(self.device) for tensor in
                             (roles.attention_mask, roles.image, roles.question, roles.answer_index)))
        return inputs, roles

    @contextmanager
    def vision_source_hooks(self, pooled):
        """For cross-attention families, feed the pooled projected cross-attention states to `pooled`."""
        if self.family.vision_source != "cross_attention_states":
            yield
            return

        def on_decoder(module, args, kwargs):
            states = kwargs.get("cross_attention_states")
            mask = kwargs.get("cross_attention_mask")
            if states is None:
                return
            batch = pooled.roles.answer_index.shape[0]
            states = states.reshape(batch, -1, states.shape[-1])  # (b * images * tiles, patches, h) -> (b, k, h)
            rows = torch.arange(batch, device=states.device)
            if mask is not None:  # keys the answer position may see (valid tiles), (b, k)
                allowed = (mask[rows, 0, pooled.roles.answer_index] == 0).to(torch.float32)
            else:
                allowed = torch.ones(states.shape[:2], device=states.device)
            weights = allowed / allowed.sum(dim=1, keepdim=True).clamp_min(1.0)
            pooled.set_vision(torch.einsum("bk,bkh->bh", weights, states.to(torch.float32)))

        handle = self.language_model.register_forward_pre_hook(on_decoder, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()


def token_mixer(layer) -> str:
    """What mixes tokens in a decoder layer without attention: the classes of its children that are neither
    norms nor feed-forward blocks (e.g. Lfm2ShortConv, Qwen3_5GatedDeltaNet); else the layer's class."""
    skip = ("norm", "mlp", "moe", "feed_forward", "ffn", "dropout", "experts")
    names = [type(child).__name__ for name, child in layer.named_children()
             if not any(word in name.lower() for word in skip) and not type(child).__name__.lower().endswith("norm")]
    return ", ".join(names) or type(layer).__name__


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5: LlavaForConditionalGeneration."""

    model_type = "llava"


class LlavaNextAdapter(VLMAdapter):
    """LLaVA-1.6: LlavaNextForConditionalGeneration (any-resolution tiling: image token counts vary)."""

    model_type = "llava_next"


ADAPTERS = {"llava": LlavaAdapter, "llava_next": LlavaNextAdapter}
MODEL_CLASSES = {model_type: family.model_class for model_type, family in FAMILIES.items()}


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


def image_only(processor_class):
    """`processor_class` without its video processor. Without torchvision, transformers can neither build
    nor load a video processor, and processors that declare one (Qwen-VL, SmolVLM, InternVL, OneVision)
    refuse to start; pidflow sends images only. Same class name, so saved folders stay standard."""
    import inspect

    import transformers

    if transformers.utils.is_torchvision_available() or "video_processor" not in processor_class.get_attributes():
        return processor_class
    # transformers reads a processor's options from its __init__'s code object: write a real signature
    parameters = [p for name, p in inspect.signature(processor_class.__init__).parameters.items()
                  if name not in ("self", "video_processor") and p.kind is p.POSITIONAL_OR_KEYWORD]
    names = [p.name for p in parameters]
    source = (f"def __init__(self, {''.join(f'{n}=_defaults[{n!r}], ' for n in names)}**kwargs):\n"
              f"    _parent.__init__(self, {''.join(f'{n}={n}, ' for n in names)}video_processor=None, **kwargs)\n")
    scope = {"_parent": processor_class,
             "_defaults": {p.name: None if p.default is p.empty else p.default for p in parameters}}
    exec(source, scope)  # noqa: S102 - the source is built from parameter names only
    __init__ = scope["__init__"]
    return type(processor_class.__name__, (processor_class,), {"__init__": __init__, "__module__": __name__})


def processor_class_for(family: Family):
    """The family's processor class (None: let AutoProcessor decide)."""
    import importlib

    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    without_torchvision()
    if family.processor:
        module, name = family.processor.split(":")
        return getattr(importlib.import_module(module), name)
    name = PROCESSOR_MAPPING_NAMES.get(family.model_type)
    return getattr(transformers, name, None) if isinstance(name, str) else None


def load_processor(source: str, family: Family):
    """The checkpoint's processor (image-only when torchvision is missing, see `image_only`)."""
    import transformers

    processor_class = processor_class_for(family)
    if processor_class is None:
        return transformers.AutoProcessor.from_pretrained(source)
    return image_only(processor_class).from_pretrained(source)


def _hub_revision(model: str) -> str | None:
    """The commit sha of a Hugging Face id's cached snapshot (as worker.revision finds it), else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json")
    return Path(found).parent.name if isinstance(found, str) else None


def _placement(device_map, quantization) -> dict:
    """from_pretrained options for `device_map` (layers over several GPUs / CPU offload; needs accelerate)
    and 8/4-bit `quantization` (needs bitsandbytes); ValueError naming the missing package."""
    import importlib.util

    options = {}
    if device_map is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise ValueError("device_map needs the accelerate package (pip install accelerate)")
        options["device_map"] = device_map
    if quantization is not None:
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError(f"{quantization} quantization needs the bitsandbytes package (pip install bitsandbytes)")
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(**{f"load_in_{quantization}": True})
        options.setdefault("device_map", "auto")
    return options


def load_adapter(model: str, *, dtype=None, device=None, attn_implementation=None, device_map=None,
                 quantization=None) -> VLMAdapter:
    """Load "demo", a local folder or a Hugging Face id; bf16 on GPU and fp32 on CPU unless told.
    `device_map` ("auto", or a layer -> device dict) spreads the layers over GPUs / CPU (accelerate);
    `quantization` "8bit" / "4bit" loads quantised weights (bitsandbytes). Both optional. Each of device,
    dtype, device_map and quantization left out comes from PIDFLOW_DEVICE, PIDFLOW_DTYPE, PIDFLOW_DEVICE_MAP,
    PIDFLOW_QUANTIZATION when set (pidcore.extract.loading), so workers and the CLI choose them.

    The family (model class, decoder, prompt template, ...) comes from the config's model_type."""
    import transformers

    from .loading import LoadOptions

    env = LoadOptions.from_env()
    device, dtype = device or env.device, dtype or env.dtype
    device_map, quantization = device_map or env.device_map, quantization or env.quantization

    name, folder = _resolve(model)
    source = str(folder) if folder is not None else model
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except OSError as error:  # not cached and no network, or not a model repository
        raise FileNotFoundError(f"cannot load model {model!r}: {error}") from error
    family = family_for(config.model_type)
    model_class = getattr(transformers, family.model_class, None)
    if model_class is None:
        raise ValueError(f"{family.label} needs transformers' {family.model_class}, missing in transformers "
                         f"{transformers.__version__}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    options = {"dtype": dtype}
    if attn_implementation:
        options["attn_implementation"] = attn_implementation
    placement = _placement(device_map, quantization)
    network = model_class.from_pretrained(source, **options, **placement)
    if "device_map" not in placement:  # placed by accelerate otherwise: pooling and masks follow each layer
        network = network.to(device)
    processor = load_processor(source, family)
    template = family.prompt
    if folder is not None:
        revision = folder_revision(folder)
        meta = folder / "pidflow.json"
        if meta.is_file():
            template = json.loads(meta.read_text()).get("prompt_template", family.prompt)
    else:
        revision = _hub_revision(model) or getattr(network.config, "_commit_hash", None) or "unknown"
    adapter_class = ADAPTERS.get(family.model_type, VLMAdapter)
    return adapter_class(network, processor, name=name, revision=revision, prompt_template=template, family=family)
