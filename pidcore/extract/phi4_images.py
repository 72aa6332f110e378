"""A PIL/NumPy image processor for Phi-4 multimodal (transformers 5.24 ships only a torchvision one).

It follows transformers' `Phi4MultimodalImageProcessor`: the image is resized to fit a grid of square
crops (at most `dynamic_hd`), padded white on the right and bottom, rescaled and normalised; the crops
follow a global view of the whole image; a patch mask marks the padding. Same keys, shapes, masks and
image-token counts. The token count is written for any crop and patch size (transformers hard-codes the
16 x 16 merged grid of 448-pixel crops with 14-pixel patches; both give the same count there). Pixel values
differ only by the resampling filters (PIL instead of torchvision), within a few 1e-2 after normalisation.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import ImagesKwargs


class Phi4MultimodalImageProcessorKwargs(ImagesKwargs, total=False):
    """patch_size: pixels per patch side; dynamic_hd: the most crops per image."""

    patch_size: int
    dynamic_hd: int


def crop_grid(width: int, height: int, crop: int, max_crops: int) -> tuple[int, int]:
    """(columns, rows) of `crop`-pixel crops covering the image, as transformers picks them: enough crops
    to cover it, or, when that is more than `max_crops`, the allowed grid closest to its aspect ratio."""
    columns, rows = math.ceil(width / crop), math.ceil(height / crop)
    if columns * rows <= max_crops:
        return columns, rows
    grids = sorted({(i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops},
                   key=lambda grid: grid[0] * grid[1])
    aspect, best, best_difference = width / height, (1, 1), float("inf")
    for grid in grids:
        difference = abs(aspect - grid[0] / grid[1])
        if difference < best_difference:
            best, best_difference = grid, difference
        elif difference == best_difference and width * height > 0.5 * crop * crop * grid[0] * grid[1]:
            best = grid
    return best


def _resize_float(image: np.ndarray, height: int, width: int, resample) -> np.ndarray:
    """(c, h, w) float32 resized channel by channel (PIL mode F)."""
    return np.stack([np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize((width, height),
                                                                                              resample))
                     for channel in image])


class Phi4MultimodalImageProcessorPil(PilBackend):
    """Phi-4 multimodal's image processor on PIL/NumPy: image_pixel_values (b, crops, 3, s, s),
    image_sizes (b, 2) in pixels, image_attention_mask (b, crops, s/p, s/p) and num_img_tokens."""

    resample = PILImageResampling.BICUBIC
    size = {"height": 448, "width": 448}
    patch_size = 14
    dynamic_hd = 36
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    valid_kwargs = Phi4MultimodalImageProcessorKwargs
    model_input_names = ["image_pixel_values", "image_sizes", "image_attention_mask"]

    def _tiled(self, image: np.ndarray, crop: int, patch: int, max_crops: int) -> tuple[np.ndarray, np.ndarray]:
        """The image resized into its crop grid and padded white; the patch mask (rows, columns) of the grid."""
        height, width = image.shape[-2:]
        columns, rows = crop_grid(width, height, crop, max_crops)
        target_width, target_height = crop * columns, crop * rows
        if target_width / width < target_height / height:
            new_width, new_height = target_width, int(height * target_width / width)
        else:
            new_width, new_height = int(width * target_height / height), target_height
        if min(new_height, target_height) < 10 or min(new_width, target_width) < 10:
            raise ValueError(f"the aspect ratio is very extreme {(new_width, new_height)}")
        pad_width, pad_height = target_width - new_width, target_height - new_height
        patches = crop // patch
        mask = np.ones((patches * rows, patches * columns), dtype=np.float32)
        if pad_width >= patch:
            mask[:, -(pad_width // patch):] = 0
        if pad_height >= patch:
            mask[-(pad_height // patch):, :] = 0
        picture = Image.fromarray(np.moveaxis(image, 0, -1).astype(np.uint8)).resize((new_width, new_height),
                                                                                     Image.Resampling.BILINEAR)
        canvas = np.full((target_height, target_width, image.shape[0]), 255, dtype=np.uint8)
        canvas[:new_height, :new_width] = np.asarray(picture).reshape(new_height, new_width, -1)
        return np.moveaxis(canvas, -1, 0), mask

    def _preprocess(self, images, do_resize, size, resample, do_rescale, rescale_factor, do_normalize, image_mean,
                    image_std, patch_size, dynamic_hd, return_tensors, **kwargs) -> BatchFeature:
        if size.height != size.width:
            raise ValueError("Phi4MultimodalImageProcessor only supports square sizes.")
        crop, patches = size.height, size.height // patch_size
        merged = patches // 2 + patches % 2  # side of the 2x2-pooled patch grid of one crop
        pixels, masks, tokens, sizes = [], [], [], []
        for image in images:
            tiled, mask = self._tiled(image, crop, patch_size, dynamic_hd)
            tiled = tiled.astype(np.float32)
            if do_rescale:
                tiled = self.rescale(tiled, rescale_factor)
            if do_normalize:
                tiled = self.normalize(tiled, image_mean, image_std)
            height, width = tiled.shape[-2:]
            rows, columns = height // crop, width // crop
            views = _resize_float(tiled, crop, crop, resample)[None]  # the global view first
            crops = tiled.reshape(3, rows, crop, columns, crop).transpose(1, 3, 0, 2, 4).reshape(-1, 3, crop, crop)
            crop_masks = mask.reshape(rows, patches, columns, patches).transpose(0, 2, 1, 3).reshape(-1, patches,
                                                                                                    patches)
            pooled = crop_masks[:, 0::2, 0::2].reshape(rows, columns, merged, merged).transpose(0, 2, 1, 3)
            pooled = pooled.reshape(rows * merged, columns * merged)
            # global view: merged rows of (merged + 1) with a row separator, one global separator, then the
            # valid part of the crop grid, each row with its separator
            tokens.append(merged * merged + merged + 1 + int(pooled.sum()) + int(pooled[:, 0].sum()))
            pixels.append(np.concatenate([views, crops]).astype(np.float32))
            masks.append(np.concatenate([np.ones((1, patches, patches), np.float32), crop_masks]))
            sizes.append([height, width])
        most = max(len(view) for view in pixels)
        pixels = np.stack([np.concatenate([p, np.zeros((most - len(p), *p.shape[1:]), np.float32)]) for p in pixels])
        masks = np.stack([np.concatenate([m, np.ones((most - len(m), *m.shape[1:]), np.float32)]) for m in masks])
        data = {"image_pixel_values": pixels, "image_sizes": np.array(sizes, dtype=np.int64),
                "image_attention_mask": masks, "num_img_tokens": tokens}
        return BatchFeature(data=data, tensor_type=return_tensors)


def register() -> None:
    """Without torchvision, let AutoImageProcessor (and so Phi4MultimodalProcessor.from_pretrained) pick
    this class; saved folders keep the standard `Phi4MultimodalImageProcessor` type."""
    import importlib.util

    from transformers import AutoImageProcessor, Phi4MultimodalConfig
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    if importlib.util.find_spec("torchvision") is not None:
        return
    AutoImageProcessor.register(Phi4MultimodalConfig, exist_ok=True, image_processor_classes={
        "torchvision": None, "pil": Phi4MultimodalImageProcessorPil})
    # a saved folder names `Phi4MultimodalImageProcessor`: its backend table must offer the PIL class by name
    IMAGE_PROCESSOR_MAPPING_NAMES.setdefault("phi4_multimodal", {})["pil"] = Phi4MultimodalImageProcessorPil.__name__
