"""A PIL/NumPy image processor for Llama 4 (transformers 5.24 ships only a torchvision one).

It follows transformers' `Llama4ImageProcessor`: among the canvases of at most `max_patches` square tiles
it picks the one that needs the least resizing (upscaling only up to one tile side unless
`resize_to_max_canvas`), resizes the image into it without distortion, pads black on the right and bottom,
rescales and normalises in bfloat16 (as the original), and splits it into tiles, row by row; an image of
more than one tile gets a global tile (the whole image resized to one tile) after them. Same keys and
shapes (`pixel_values`: every image's tiles, concatenated; `aspect_ratios`: tile rows and columns);
pixel values differ only by the resampling filters (PIL instead of torchvision).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs


class Llama4ImageProcessorKwargs(ImagesKwargs, total=False):
    """max_patches: the most tiles per image; resize_to_max_canvas: upscale to the largest canvas."""

    max_patches: int
    resize_to_max_canvas: bool


def canvases(max_tiles: int, tile: int) -> list[tuple[int, int]]:
    """(height, width) of every grid of at most `max_tiles` tiles, grouped by aspect ratio in the order
    transformers lists them (its ties are broken by this order)."""
    by_ratio: dict[float, list[tuple[int, int]]] = {}
    for count in range(max_tiles, 0, -1):
        for rows in sorted(d for d in range(1, count + 1) if count % d == 0):
            by_ratio.setdefault(rows / (count // rows), []).append((rows, count // rows))
    return [(rows * tile, columns * tile) for grids in by_ratio.values() for rows, columns in grids]


def best_canvas(height: int, width: int, options: list[tuple[int, int]], to_max: bool = False) -> tuple[int, int]:
    """The canvas needing the least resizing without distortion: the smallest upscale (or, with `to_max`,
    the largest), else the mildest downscale; among equals the smallest area."""
    sizes = np.array(options, dtype=np.float64)
    scales = np.minimum(sizes[:, 0] / height, sizes[:, 1] / width)
    up = scales[scales >= 1]
    chosen = (up.max() if to_max else up.min()) if len(up) else scales[scales < 1].max()
    candidates = sizes[scales == chosen]
    best = candidates[np.argmin(candidates[:, 0] * candidates[:, 1])]
    return int(best[0]), int(best[1])


def fit_without_distortion(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int]:
    """The largest (height, width) of the image's aspect ratio inside the target (floored, at least 1)."""
    if target_width / width < target_height / height:
        return max(min(int(height * (target_width / width)), target_height), 1), target_width
    return target_height, max(min(int(width * (target_height / height)), target_width), 1)


class Llama4ImageProcessorPil(PilBackend):
    """Llama 4's image processor on PIL/NumPy: pixel_values (tiles, 3, s, s) and aspect_ratios (images, 2)."""

    resample = PILImageResampling.BILINEAR
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    size = {"height": 336, "width": 336}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    max_patches = 16
    resize_to_max_canvas = False
    valid_kwargs = Llama4ImageProcessorKwargs
    model_input_names = ["pixel_values", "aspect_ratios"]

    @staticmethod
    def _resized(image: np.ndarray, height: int, width: int, resample) -> np.ndarray:
        picture = Image.fromarray(np.moveaxis(image, 0, -1).astype(np.uint8).squeeze())
        return np.asarray(picture.resize((width, height), resample)).reshape(height, width, -1).transpose(2, 0, 1)

    @staticmethod
    def _normalised(image: np.ndarray, do_rescale, factor, do_normalize, mean, std) -> np.ndarray:
        """Rescaled and normalised in bfloat16, as transformers' Llama 4 processor does (float32 out)."""
        values = torch.from_numpy(np.ascontiguousarray(image)).to(torch.bfloat16)
        if do_rescale:
            values = values * factor
        if do_normalize:
            shape = (-1, 1, 1)
            values = (values - torch.tensor(mean, dtype=values.dtype).view(shape)) / torch.tensor(
                std, dtype=values.dtype).view(shape)
        return values.to(torch.float32).numpy()

    def _preprocess(self, images, do_resize, size, resample, do_rescale, rescale_factor, do_normalize, image_mean,
                    image_std, max_patches, resize_to_max_canvas, return_tensors, **kwargs) -> BatchFeature:
        if not do_resize:
            raise ValueError("Llama4 always resizes images to one of its supported resolutions")
        if size.height != size.width:
            raise ValueError("`size` must be square.")
        tile, options = size.height, canvases(max_patches, size.height)
        tiles, ratios = [], []
        for image in images:
            height, width = image.shape[-2:]
            target = best_canvas(height, width, options, resize_to_max_canvas)
            bound = target if resize_to_max_canvas else (min(max(height, tile), target[0]),
                                                         min(max(width, tile), target[1]))
            new_height, new_width = fit_without_distortion(height, width, *bound)
            canvas = np.zeros((image.shape[0], *target), dtype=np.uint8)
            canvas[:, :new_height, :new_width] = self._resized(image, new_height, new_width, resample)
            canvas = self._normalised(canvas, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            rows, columns = target[0] // tile, target[1] // tile
            grid = canvas.reshape(-1, rows, tile, columns, tile).transpose(1, 3, 0, 2, 4).reshape(-1, canvas.shape[0],
                                                                                                  tile, tile)
            if rows * columns > 1:
                whole = self._normalised(self._resized(image, tile, tile, resample), do_rescale, rescale_factor,
                                         do_normalize, image_mean, image_std)
                grid = np.concatenate([grid, whole[None]])
            tiles.append(grid)
            ratios.append([rows, columns])
        data = {"pixel_values": np.concatenate(tiles), "aspect_ratios": np.array(ratios, dtype=np.int64)}
        return BatchFeature(data=data, tensor_type=return_tensors)


def register() -> None:
    """Without torchvision, let AutoImageProcessor (and so Llama4Processor.from_pretrained) pick this class;
    saved folders keep the standard `Llama4ImageProcessor` type."""
    import importlib.util

    from transformers import AutoImageProcessor, Llama4Config
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    if importlib.util.find_spec("torchvision") is not None:
        return
    AutoImageProcessor.register(Llama4Config, exist_ok=True, image_processor_classes={
        "torchvision": None, "pil": Llama4ImageProcessorPil})
    # a saved folder names `Llama4ImageProcessor`: its backend table must offer the PIL class by name
    IMAGE_PROCESSOR_MAPPING_NAMES.setdefault("llama4", {})["pil"] = Llama4ImageProcessorPil.__name__


def fix_output(model) -> None:
    """transformers 5.24's Llama4ForConditionalGeneration.forward reads `image_outputs` from its language
    model's output, a MoeCausalLMOutputWithPast without that field, and so fails on every call; give it the
    output class it reads (same logits, cache, states; no image outputs)."""
    from transformers.models.llama4.modeling_llama4 import Llama4CausalLMOutputWithPast

    def as_read(module, args, kwargs, output):
        if isinstance(output, tuple) or hasattr(output, "image_outputs"):
            return None
        return Llama4CausalLMOutputWithPast(loss=output.loss, logits=output.logits, cache=output.cache,
                                            hidden_states=output.hidden_states, attentions=output.attentions,
                                            router_logits=output.router_logits)

    if not getattr(model, "_pidflow_output_fixed", False):
        model.language_model.register_forward_hook(as_read, with_kwargs=True)
        model._pidflow_output_fixed = True
