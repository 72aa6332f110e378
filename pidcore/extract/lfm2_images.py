"""A PIL/NumPy image processor for LFM2-VL (transformers 5.24 ships only a torchvision one).

It follows transformers' `Lfm2VlImageProcessor`: an image is resized so that both sides are multiples of
patch x downsample and its token count lies in [min_image_tokens, max_image_tokens] ("smart resize"); an
image too large for that (beyond `max_pixels_tolerance`) is instead split into a grid of `tile_size` tiles
(between `min_tiles` and `max_tiles`, the grid closest to its aspect ratio), followed by a thumbnail at the
smart-resized size. Each tile is rescaled, normalised, cut into patches (rows of patch_size^2 * 3 values,
pixels row by row, channels last) and padded to the most patches a tile can have; `pixel_attention_mask`
marks the real patches, `spatial_shapes` gives each tile's patch rows and columns; `image_rows`,
`image_cols` and `image_sizes` tell the processor how many image tokens to write. Same keys and shapes;
pixel values differ only by the resampling filter (PIL instead of torchvision).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs


class Lfm2VlImageProcessorKwargs(ImagesKwargs, total=False):
    """The options of transformers' Lfm2VlImageProcessor (see its docstring)."""

    downsample_factor: int
    do_image_splitting: bool
    min_tiles: int
    max_tiles: int
    use_thumbnail: bool
    min_image_tokens: int
    max_image_tokens: int
    encoder_patch_size: int
    tile_size: int
    max_pixels_tolerance: float
    do_pad: bool
    return_row_col_info: bool


def smart_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width): multiples of `factor` near the image's, with min_pixels <= area <= max_pixels."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def grid_for(height: int, width: int, min_tiles: int, max_tiles: int, tile: int) -> tuple[int, int]:
    """(columns, rows) of tiles: the allowed grid closest to the image's aspect ratio (ties: the later grid
    when the image covers more than half of it), as transformers picks it."""
    ratios = sorted({(w, h) for n in range(min_tiles, max_tiles + 1) for w in range(1, n + 1)
                     for h in range(1, n + 1) if min_tiles <= w * h <= max_tiles}, key=lambda r: r[0] * r[1])
    aspect, best, best_difference = width / height, (1, 1), float("inf")
    for ratio in ratios:
        difference = abs(aspect - ratio[0] / ratio[1])
        if difference < best_difference:
            best, best_difference = ratio, difference
        elif difference == best_difference and width * height > 0.5 * tile * tile * ratio[0] * ratio[1]:
            best = ratio
    return best


def _resized(image: np.ndarray, height: int, width: int, resample) -> np.ndarray:
    """(c, h, w) uint8 -> (c, height, width) uint8 through PIL."""
    picture = Image.fromarray(np.moveaxis(image, 0, -1).astype(np.uint8).squeeze())
    out = np.asarray(picture.resize((width, height), resample))
    return np.moveaxis(out.reshape(height, width, -1), -1, 0)


class Lfm2VlImageProcessorPil(PilBackend):
    """LFM2-VL's image processor on PIL/NumPy: pixel_values (tiles, max patches, p*p*3), pixel_attention_mask
    (tiles, max patches), spatial_shapes (tiles, 2) and, with return_row_col_info, image_rows, image_cols,
    image_sizes per image."""

    downsample_factor = 2
    do_image_splitting = True
    min_tiles = 2
    max_tiles = 10
    use_thumbnail = True
    min_image_tokens = 64
    max_image_tokens = 256
    encoder_patch_size = 16
    tile_size = 512
    max_pixels_tolerance = 2.0
    do_resize = True
    size = {"height": 512, "width": 512}
    resample = PILImageResampling.BILINEAR
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_pad = True
    return_row_col_info = False
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    do_convert_rgb = True
    valid_kwargs = Lfm2VlImageProcessorKwargs
    model_input_names = ["pixel_values", "pixel_attention_mask", "spatial_shapes"]

    def _tiles(self, image: np.ndarray, o: dict) -> tuple[list[np.ndarray], int, int, list[int]]:
        """The image's tiles (uint8, c x h x w), grid rows and columns, and its smart-resized [h, w]."""
        height, width = image.shape[-2:]
        patch, factor = o["encoder_patch_size"], o["downsample_factor"]
        total = patch * factor
        min_tiles, max_tiles = (o["min_tiles"], o["max_tiles"]) if o["do_image_splitting"] else (1, 1)
        if min_tiles > max_tiles:
            raise ValueError("min_tiles must be less than or equal to max_tiles")
        h_round = max(patch, round(height / total) * total)
        w_round = max(patch, round(width / total) * total)
        large = h_round * w_round > o["max_image_tokens"] * patch ** 2 * factor ** 2 * o["max_pixels_tolerance"]
        new_height, new_width = smart_size(height, width, total, o["min_image_tokens"] * patch ** 2 * factor ** 2,
                                           o["max_image_tokens"] * patch ** 2 * factor ** 2)
        if large and not min_tiles == max_tiles == 1:
            columns, rows = grid_for(height, width, min_tiles, max_tiles, o["tile_size"])
            tile = o["tile_size"]
            canvas = _resized(image, tile * rows, tile * columns, o["resample"])
            tiles = [canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]
                     for r in range(rows) for c in range(columns)]
            if o["use_thumbnail"] and rows * columns != 1:
                tiles.append(_resized(image, new_height, new_width, o["resample"]))
            return tiles, rows, columns, [new_height, new_width]
        return [_resized(image, new_height, new_width, o["resample"])], 1, 1, [new_height, new_width]

    def _preprocess(self, images, do_rescale, rescale_factor, do_normalize, image_mean, image_std, return_tensors,
                    **kwargs) -> BatchFeature:
        o = {name: kwargs[name] if kwargs.get(name) is not None else getattr(self, name)
             for name in ("downsample_factor", "do_image_splitting", "min_tiles", "max_tiles", "use_thumbnail",
                          "min_image_tokens", "max_image_tokens", "encoder_patch_size", "tile_size",
                          "max_pixels_tolerance", "do_pad", "return_row_col_info", "resample")}
        patch = o["encoder_patch_size"]
        most = max(o["max_image_tokens"] * o["downsample_factor"] ** 2,
                   (o["tile_size"] // patch) ** 2 if o["do_image_splitting"] else 0)
        flat = [image for entry in images for image in (entry if isinstance(entry, list | tuple) else [entry])]
        pixels, masks, shapes, rows, columns, sizes = [], [], [], [], [], []
        for image in flat:
            tiles, grid_rows, grid_columns, size = self._tiles(np.asarray(image), o)
            rows.append(grid_rows)
            columns.append(grid_columns)
            sizes.append(size)
            for tile in tiles:
                values = tile.astype(np.float32)
                if do_rescale:
                    values = self.rescale(values, rescale_factor)
                if do_normalize:
                    values = self.normalize(values, image_mean, image_std)
                channels, height, width = values.shape
                grid = (height // patch, width // patch)
                patches = values.reshape(channels, grid[0], patch, grid[1], patch).transpose(1, 3, 2, 4, 0)
                patches = patches.reshape(grid[0] * grid[1], -1)
                mask = np.ones(most if o["do_pad"] else len(patches), dtype=np.int32)
                if o["do_pad"] and len(patches) < most:
                    mask[len(patches):] = 0
                    patches = np.concatenate([patches, np.zeros((most - len(patches), patches.shape[1]),
                                                                np.float32)])
                pixels.append(patches.astype(np.float32))
                masks.append(mask)
                shapes.append(list(grid))
        data = {"pixel_values": np.stack(pixels)}
        if o["do_pad"]:
            data.update(pixel_attention_mask=np.stack(masks), spatial_shapes=np.array(shapes, dtype=np.int64))
        if o["return_row_col_info"]:
            data.update(image_rows=rows, image_cols=columns, image_sizes=sizes)
        return BatchFeature(data=data, tensor_type=return_tensors)


def register() -> None:
    """Without torchvision, let AutoImageProcessor (and so Lfm2VlProcessor.from_pretrained) pick this class;
    saved folders keep the standard `Lfm2VlImageProcessor` type."""
    import importlib.util

    from transformers import AutoImageProcessor, Lfm2VlConfig
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    if importlib.util.find_spec("torchvision") is not None:
        return
    AutoImageProcessor.register(Lfm2VlConfig, exist_ok=True, image_processor_classes={
        "torchvision": None, "pil": Lfm2VlImageProcessorPil})
    IMAGE_PROCESSOR_MAPPING_NAMES.setdefault("lfm2_vl", {})["pil"] = Lfm2VlImageProcessorPil.__name__
