"""``shapes-detection``: the embedded detection dataset -- coloured shapes on textured backgrounds,
generated from a seed, written to disk as real COCO JSON + PNG files and read back with ``load_coco``.

Nothing is downloaded; the default (320 train + 96 val + 96 test images of 64x64) takes well under a
second to generate, so detection searches run on CPU. The test split is held out of every search (no
search step sees it; a pipeline's ``train`` step scores it); ``test_images: 0`` makes none. A
proposed design (PAPERS.md §7 asks for a toy SODA-schema set of coloured shapes with attribute tags,
and fixes nothing else):

- *classes* (4): square, circle, triangle, cross; each object's colour is drawn independently of its
  class from 9 colours (always contrasting with the background), so only the shape tells the class;
- *objects*: 1-4 per image, side log-uniform in 6..40 px on a 64x64 canvas (scaled with the canvas),
  so COCO's small (< 32^2 px) and medium objects both occur (no large ones: ``AP_large`` is NaN);
  pairs overlap by IoU <= 0.2 and larger objects are drawn first, so no object is hidden;
- *backgrounds*: a base colour per ``location`` (citystreet grey, highway dark grey with lane stripes,
  countryroad green-brown) with low-frequency texture and pixel noise;
- *SODA10M-style attributes* on every image record: ``city``, ``location``, ``period`` (``daytime`` |
  ``night``: night images are 2-3x darker with a blue cast) and ``weather`` (``clear`` | ``overcast``:
  haze | ``rainy``: haze, streaks and more noise; 60/25/15 %).

``night_fraction`` defaults to 0.0: the default task is the clean in-domain benchmark, and the
day-to-night shift is opt-in, e.g. ``night_fraction: 0.5, train_where: {period: daytime},
val_where: {period: night}`` (``test_where`` filters the test split likewise). Image ``i`` of a split
depends only on (seed, split, i) and the canvas, so more images extend a dataset rather than change
it, and the test split left the train and val images as they were.

Files: ``<root>/shapes-detection-<hash of the generator options>/{train,val,test}.json`` and
``{train,val,test}/NNNNNN.png``, plus ``meta.json`` (the options). ``root`` defaults to ``$AUTOML_DATA`` or
``~/.cache/automl/datasets``. A dataset is generated into a temporary folder and renamed into place
under a file lock: concurrent workers generate it once, a killed generation leaves no partial dataset
(its leftovers are removed by the next one), and a complete folder is reused.
"""
from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from automl.errors import ConfigError
from automl.tasks.attributes import check_where
from automl.tasks.base import tasks
from automl.tasks.cache import env_data_root, generated_folder, options_digest, options_key
from automl.tasks.coco_format import load_coco
from automl.tasks.detection import DetectionData, DetectionInfo, DetectionTask, parse_image_size

#: bump when the generator changes what a seed produces (part of the folder hash)
GENERATOR_VERSION = 1
CLASSES = ("square", "circle", "triangle", "cross")
COLOURS = {
    "red": (0.9, 0.15, 0.1), "green": (0.1, 0.75, 0.2), "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.9, 0.1), "magenta": (0.9, 0.2, 0.85), "cyan": (0.1, 0.85, 0.9),
    "white": (0.97, 0.97, 0.97), "orange": (1.0, 0.55, 0.05), "black": (0.05, 0.05, 0.05),
}
CITIES = ("Shanghai", "Beijing", "Shenzhen", "Guangzhou")
LOCATIONS = {"citystreet": (0.5, 0.5, 0.5), "highway": (0.33, 0.33, 0.36), "countryroad": (0.42, 0.5, 0.28)}
WEATHER = {"clear": 0.6, "overcast": 0.25, "rainy": 0.15}
#: object side range on a 64 px canvas (scaled with the canvas's shorter side)
SIDE_RANGE = (6.0, 40.0)
MAX_IOU = 0.2
MIN_CONTRAST = 0.45


@tasks.register("shapes-detection")
class ShapesDetectionTask(DetectionTask):
    """Options: ``train_images`` (320), ``val_images`` (96), ``test_images`` (96: the test split, held
    out of every search; 0 for none), ``image_size`` (64, or [H, W]), ``seed`` (0), ``night_fraction``
    (0.0: share of night images, in every split), ``root`` (parent folder of the generated dataset;
    default ``$AUTOML_DATA`` or ``~/.cache/automl/datasets``), ``train_where`` / ``val_where`` /
    ``test_where`` (attribute filters, e.g. ``{period: night}``, passed to ``load_coco``)."""

    def __init__(self, train_images: int = 320, val_images: int = 96, test_images: int = 96,
                 image_size: int | list[int] = 64, seed: int = 0, night_fraction: float = 0.0,
                 root: str | None = None, train_where: dict[str, Any] | None = None,
                 val_where: dict[str, Any] | None = None, test_where: dict[str, Any] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        self.train_images = _positive_int("train_images", train_images)
        self.val_images = _positive_int("val_images", val_images)
        self.test_images = _int("test_images", test_images)
        if self.test_images < 0:
            raise ConfigError(f"shapes-detection: test_images must be >= 0 (0: no test split), got {test_images!r}",
                              field="test_images")
        self.image_size = _image_size(image_size)
        self.seed = _int("seed", seed)
        if isinstance(night_fraction, bool) or not isinstance(night_fraction, (int, float)) \
                or not 0.0 <= night_fraction <= 1.0:
            raise ConfigError(f"shapes-detection: night_fraction must be a number in [0, 1], got {night_fraction!r}",
                              field="night_fraction")
        self.night_fraction = float(night_fraction)
        self.root = (Path(root).expanduser() if root is not None else env_data_root()).resolve()
        self.train_where = _where("train_where", train_where)
        self.val_where = _where("val_where", val_where)
        self.test_where = _where("test_where", test_where)
        if self.test_where is not None and not self.test_images:
            raise ConfigError("shapes-detection: test_where filters the test split, but test_images is 0 (no test "
                              "split)", field="test_where")
        for name, spec in (("train_where", self.train_where), ("val_where", self.val_where),
                           ("test_where", self.test_where)):
            periods = {str(v).casefold() for v in (spec or {}).get("period", ["daytime", "night"])}
            if periods.isdisjoint(_periods_present(self.night_fraction)):
                raise ConfigError(f"shapes-detection: {name} period {sorted(periods)} keeps no image with "
                                  f"night_fraction {self.night_fraction} (set night_fraction between 0 and 1 "
                                  f"for both daytime and night images)", field=name)

    @property
    def info(self) -> DetectionInfo:
        return DetectionInfo(class_names=CLASSES, image_size=self.image_size)

    def generator_options(self) -> dict[str, Any]:
        """What the generated files depend on (hashed into the folder name)."""
        return {"version": GENERATOR_VERSION, "train_images": self.train_images, "val_images": self.val_images,
                "test_images": self.test_images, "image_size": list(self.image_size), "seed": self.seed,
                "night_fraction": self.night_fraction}

    @property
    def folder(self) -> Path:
        """The dataset's folder (it exists once :meth:`load` or :meth:`prepare` has run)."""
        return self.root / f"shapes-detection-{options_digest(self.generator_options())}"

    def prepare(self) -> Path:
        """Generate the dataset unless a complete copy exists; returns its folder."""
        return ensure_dataset(self.root, self.generator_options())

    def fingerprint(self) -> str:
        blob = options_key({"task": "shapes-detection", **self.generator_options(),
                            "train_where": self.train_where, "val_where": self.val_where,
                            "test_where": self.test_where})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def load(self) -> DetectionData:
        return _load(options_key({"root": str(self.root), "generator": self.generator_options(),
                                  "train_where": self.train_where, "val_where": self.val_where,
                                  "test_where": self.test_where}))


@lru_cache(maxsize=4)
def _load(key: str) -> DetectionData:
    spec = json.loads(key)
    folder = ensure_dataset(Path(spec["root"]), spec["generator"])
    train = load_coco(folder / "train.json", folder / "train", image_size=None, where=spec["train_where"])
    val = load_coco(folder / "val.json", folder / "val", image_size=None, where=spec["val_where"])
    if not spec["generator"]["test_images"]:
        return DetectionData(train=train, val=val)
    test = load_coco(folder / "test.json", folder / "test", image_size=None, where=spec["test_where"])
    return DetectionData(train=train, val=val, test=test)


def ensure_dataset(root: Path, options: dict[str, Any]) -> Path:
    """The folder of the dataset generated with ``options`` under ``root``, generated when absent
    (:func:`automl.tasks.cache.generated_folder`)."""
    return generated_folder(root, "shapes-detection", options, lambda tmp: generate(
        tmp, train_images=options["train_images"], val_images=options["val_images"],
        test_images=options["test_images"], image_size=tuple(options["image_size"]), seed=options["seed"],
        night_fraction=options["night_fraction"]))


def generate(folder: Path, *, train_images: int, val_images: int, image_size: tuple[int, int], seed: int,
             night_fraction: float, test_images: int = 0) -> None:
    """Write the splits into ``folder`` (created): ``train.json``, ``val.json`` (and with ``test_images``,
    ``test.json``) and their PNGs. Image ``i`` of split ``k`` (train 0, val 1, test 2) is drawn from
    ``(seed, k, i)`` alone, so no two images of the dataset share their draws."""
    splits = (("train", train_images), ("val", val_images), ("test", test_images))
    for split_index, (split, count) in enumerate(splits):
        if split == "test" and not count:
            continue
        images_dir = folder / split
        images_dir.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            pixels, objects, attributes = render_image(rng, image_size, night_fraction)
            image_id = i + 1
            file_name = f"{image_id:06d}.png"
            Image.fromarray(pixels).save(images_dir / file_name, compress_level=1)
            images.append({"id": image_id, "file_name": file_name, "width": image_size[1],
                           "height": image_size[0], **attributes})
            for category, (x, y, w, h) in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": category + 1, "bbox": [x, y, w, h], "area": w * h,
                                    "iscrowd": 0})
        doc = {"info": {"description": f"shapes-detection {split} (generator v{GENERATOR_VERSION}, seed {seed})"},
               "images": images, "annotations": annotations,
               "categories": [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)]}
        (folder / f"{split}.json").write_text(json.dumps(doc))


def render_image(rng: np.random.Generator, image_size: tuple[int, int], night_fraction: float
                 ) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]], dict[str, str]]:
    """One image: uint8 ``[H, W, 3]`` pixels, its objects as (class index, (x, y, w, h) px) and its
    SODA10M-style attributes."""
    height, width = image_size
    attributes = {
        "city": CITIES[int(rng.integers(len(CITIES)))],
        "location": list(LOCATIONS)[int(rng.integers(len(LOCATIONS)))],
        "period": "night" if rng.random() < night_fraction else "daytime",
        "weather": str(rng.choice(list(WEATHER), p=list(WEATHER.values()))),
    }
    background = _background(rng, height, width, attributes["location"])
    canvas = Image.fromarray(_to_uint8(background))
    draw = ImageDraw.Draw(canvas)
    boxes = _place_objects(rng, height, width)
    objects = []
    for side, x, y in sorted(boxes, reverse=True):  # larger first: smaller ones stay visible on top
        category = int(rng.integers(len(CLASSES)))
        patch = background[y:y + side, x:x + side].reshape(-1, 3).mean(axis=0)
        far = [c for c in COLOURS.values() if np.linalg.norm(np.subtract(c, patch)) >= MIN_CONTRAST]
        colours = far or list(COLOURS.values())
        colour = tuple(int(round(255 * v)) for v in colours[int(rng.integers(len(colours)))])
        _draw_shape(draw, CLASSES[category], x, y, side, colour)
        objects.append((category, (x, y, side, side)))
    pixels = np.asarray(canvas, dtype=np.float32) / 255.0
    pixels = _weather(rng, pixels, attributes["weather"])
    if attributes["period"] == "night":
        pixels = pixels * rng.uniform(0.3, 0.45) * np.array([0.75, 0.85, 1.2], dtype=np.float32) + 0.02
    pixels = pixels + rng.normal(0.0, 0.015, pixels.shape).astype(np.float32)
    return _to_uint8(pixels), objects, attributes


def _background(rng: np.random.Generator, height: int, width: int, location: str) -> np.ndarray:
    """float32 [H, W, 3]: the location's base colour, low-frequency texture and pixel noise."""
    base = np.array(LOCATIONS[location], dtype=np.float32) + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
    coarse = rng.normal(0.0, 1.0, (1, 4, height // 8 + 2, width // 8 + 2)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(height, width), mode="bilinear",
                                             align_corners=False)[0].permute(1, 2, 0).numpy()
    texture = 0.07 * smooth[..., :1] + 0.025 * smooth[..., 1:]  # mostly luminance, a little colour
    image = base + texture + rng.normal(0.0, 0.02, (height, width, 3)).astype(np.float32)
    if location == "highway":  # light lane stripes
        for _ in range(int(rng.integers(1, 3))):
            column = int(rng.integers(2, width - 2))
            image[::6, column:column + 1] = 0.8
            image[1::6, column:column + 1] = 0.8
    return np.clip(image, 0.0, 1.0)


def _place_objects(rng: np.random.Generator, height: int, width: int) -> list[tuple[int, int, int]]:
    """1-4 (side, x, y) squares in the canvas overlapping pairwise by IoU <= MAX_IOU."""
    scale = min(height, width) / 64.0
    low, high = SIDE_RANGE[0] * scale, min(SIDE_RANGE[1] * scale, min(height, width))
    wanted = int(rng.integers(1, 5))
    placed: list[tuple[int, int, int]] = []
    for _ in range(wanted):
        for _attempt in range(20):
            side = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
            side = max(int(math.ceil(low)), min(side, int(high)))
            x = int(rng.integers(0, width - side + 1))
            y = int(rng.integers(0, height - side + 1))
            if all(_iou((side, x, y), other) <= MAX_IOU for other in placed):
                placed.append((side, x, y))
                break
    return placed


def _iou(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    (sa, xa, ya), (sb, xb, yb) = a, b
    iw = max(0, min(xa + sa, xb + sb) - max(xa, xb))
    ih = max(0, min(ya + sa, yb + sb) - max(ya, yb))
    inter = iw * ih
    return inter / (sa * sa + sb * sb - inter)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, side: int, colour: tuple[int, ...]) -> None:
    """Draw ``shape`` filling exactly the pixels x..x+side-1, y..y+side-1 at its extremes."""
    x1, y1 = x + side - 1, y + side - 1
    if shape == "square":
        draw.rectangle([x, y, x1, y1], fill=colour)
    elif shape == "circle":
        draw.ellipse([x, y, x1, y1], fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y1), (x1, y1), (x + (side - 1) / 2.0, y)], fill=colour)
    elif shape == "cross":
        bar = max(2, int(round(side / 3.0)))
        offset = (side - bar) // 2
        draw.rectangle([x + offset, y, x + offset + bar - 1, y1], fill=colour)
        draw.rectangle([x, y + offset, x1, y + offset + bar - 1], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _weather(rng: np.random.Generator, pixels: np.ndarray, weather: str) -> np.ndarray:
    """Overcast: haze (lower contrast); rainy: haze, light diagonal streaks and more noise."""
    if weather == "clear":
        return pixels
    pixels = 0.75 * pixels + 0.25 * 0.6
    if weather == "rainy":
        height, width = pixels.shape[:2]
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(15, 35))):
            x, y = float(rng.uniform(0, width)), float(rng.uniform(-4, height))
            length = float(rng.uniform(4, 10))
            draw.line([(x, y), (x - 0.35 * length, y + length)], fill=255, width=1)
        alpha = 0.35 * (np.asarray(mask, dtype=np.float32) / 255.0)[..., None]
        pixels = pixels * (1.0 - alpha) + 0.85 * alpha
        pixels = pixels + rng.normal(0.0, 0.03, pixels.shape).astype(np.float32)
    return pixels


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    out: np.ndarray = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out


def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"shapes-detection: {name} must be an integer, got {value!r}", field=name)
    return value


def _positive_int(name: str, value: object) -> int:
    number = _int(name, value)
    if number < 1:
        raise ConfigError(f"shapes-detection: {name} must be >= 1, got {value!r}", field=name)
    return number


def _image_size(value: object) -> tuple[int, int]:
    return parse_image_size(value, minimum=32, task="shapes-detection")


def _periods_present(night_fraction: float) -> set[str]:
    return {p for p, share in (("daytime", 1.0 - night_fraction), ("night", night_fraction)) if share > 0}


def _where(name: str, value: object) -> dict[str, Any] | None:
    spec = check_where(value, name=name)
    return None if spec is None else {k: list(v) for k, v in spec.items()}
