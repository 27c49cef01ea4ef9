"""Detection data: the COCO loader and its errors, COCO scoring, and the shapes-detection / coco tasks."""
from __future__ import annotations

import copy
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.coco import CocoTask
from automl.tasks.coco_eval import evaluate_detections
from automl.tasks.coco_format import load_coco
from automl.tasks.detection import DetectionInfo, DetectionSplit
from automl.tasks.shapes_detection import CLASSES, ShapesDetectionTask, ensure_dataset, generate

SMALL = {"train_images": 24, "val_images": 12}


# ---------------------------------------------------------------------------------------------------
# a tiny SODA10M-style COCO dataset written by the tests


def _soda_doc() -> dict:
    """6 images of 40x40 (ids 11..16; 14 and 16 at night), 8 annotations, categories 1-3 (written
    out of id order), one crowd region."""
    periods = ["daytime", "daytime", "daytime", "night", "daytime", "night"]
    weathers = ["clear", "rainy", "overcast", "clear", "rainy", "overcast"]
    images = [{"id": 11 + i, "file_name": f"img_{i}.png", "width": 40, "height": 40, "city": "Shanghai",
               "location": "Citystreet", "period": p.capitalize(), "weather": w.capitalize()}
              for i, (p, w) in enumerate(zip(periods, weathers))]
    boxes = [(11, 1, [2, 2, 10, 10]), (11, 3, [20, 20, 12, 8]), (12, 2, [5, 5, 30, 30]), (13, 1, [0, 0, 40, 40]),
             (14, 3, [10, 12, 6, 6]), (14, 1, [22, 5, 14, 20]), (15, 2, [1, 30, 9, 9]), (16, 2, [30, 1, 9, 38])]
    annotations = [{"id": 100 + k, "image_id": im, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                   for k, (im, c, b) in enumerate(boxes)]
    annotations.append({"id": 200, "image_id": 12, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16,
                        "iscrowd": 1})
    categories = [{"id": 3, "name": "Car"}, {"id": 1, "name": "Pedestrian"}, {"id": 2, "name": "Cyclist"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write(folder: Path, doc: dict, name: str = "ann.json", *, sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write ``doc`` and a noise PNG per image (of the record's size unless ``sizes`` says otherwise);
    returns the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for im in doc["images"]:
        w, h = (sizes or {}).get(im["file_name"], (im["width"], im["height"]))
        pixels = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / im["file_name"])
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def soda(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path / "soda", _soda_doc()), tmp_path / "soda" / "images"


def _gt_predictions(split: DetectionSplit) -> list:
    return [(b, torch.ones(len(b)), l) for b, l in zip(split.boxes, split.labels)]


# ---------------------------------------------------------------------------------------------------
# the loader and the metrics


def test_load_coco_reads_soda_schema_with_where_resize_and_crowd(soda: tuple[Path, Path]) -> None:
    ann, images = soda
    split = load_coco(ann, images)
    assert split.image_ids == [11, 12, 13, 14, 15, 16]
    assert split.category_ids == (1, 2, 3)  # labels follow ascending ids, whatever the file's order
    assert split.images[0].shape == (3, 40, 40) and split.images[0].dtype == torch.float32
    assert 0.0 <= float(split.images[0].min()) and float(split.images[0].max()) <= 1.0
    assert split.attributes[3] == {"city": "Shanghai", "location": "Citystreet", "period": "Night", "weather": "Clear"}
    torch.testing.assert_close(split.boxes[0], torch.tensor([[2.0, 2, 12, 12], [20, 20, 32, 28]]))
    assert split.labels[0].tolist() == [0, 2] and split.labels[0].dtype == torch.int64
    # the crowd region of image 12 is ground truth for COCOeval, not a training box
    assert split.labels[1].tolist() == [1]
    assert [a["iscrowd"] for a in split.coco.imgToAnns[12]] == [0, 1]

    night = load_coco(ann, images, where={"period": "night"})  # case-insensitive: the file says "Night"
    assert night.image_ids == [14, 16]
    assert len(night.coco.getImgIds()) == 2 and len(night.coco.getAnnIds()) == 3
    wet = load_coco(ann, images, where={"weather": ["rainy", "overcast"], "period": "daytime"})
    assert wet.image_ids == [12, 13, 15]

    small = load_coco(ann, images, image_size=(20, 10), categories=[2, 1])  # H=20, W=10
    assert small.images[0].shape == (3, 20, 10) and small.category_ids == (1, 2)
    # x scaled by 10/40, y by 20/40; the Car (id 3) is dropped
    torch.testing.assert_close(small.boxes[0], torch.tensor([[0.5, 1, 3, 6]]))
    gt = small.coco.imgToAnns[11]
    assert [a["bbox"] for a in gt] == [[0.5, 1.0, 2.5, 5.0]] and gt[0]["area"] == pytest.approx(12.5)
    assert small.coco.imgs[11]["width"] == 10 and small.coco.imgs[11]["height"] == 20
    metrics = evaluate_detections(small, _gt_predictions(small))
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)


def test_box_slightly_outside_is_clipped(tmp_path: Path) -> None:
    doc = _soda_doc()
    doc["annotations"][0]["bbox"] = [-0.5, 2, 10, 38.8]  # within the 1 px tolerance
    split = load_coco(_write(tmp_path, doc), tmp_path / "images")
    torch.testing.assert_close(split.boxes[0][0], torch.tensor([0.0, 2, 9.5, 40]))


def test_metrics_gt_is_perfect_empty_is_zero_shifted_is_lower(soda: tuple[Path, Path]) -> None:
    split = load_coco(*soda)
    perfect = evaluate_detections(split, _gt_predictions(split))
    assert set(perfect) == {"mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"}
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    assert perfect["AP75"] == pytest.approx(1.0)
    assert np.isnan(perfect["AP_large"])  # no large objects on 40x40 images: COCO's -1 becomes NaN

    empty = [(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))] * len(split)
    none = evaluate_detections(split, empty)
    assert none["mAP"] == 0.0 and none["AP50"] == 0.0 and none["AP_small"] == 0.0 and np.isnan(none["AP_large"])

    shifted = [(b + 3.0, s, l) for b, s, l in _gt_predictions(split)]
    worse = evaluate_detections(split, shifted)
    assert worse["mAP"] < 0.9 and worse["AP75"] < perfect["AP75"]
    wrong_class = [(b, s, (l + 1) % 3) for b, s, l in _gt_predictions(split)]
    assert evaluate_detections(split, wrong_class)["mAP"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="predictions for 1 images"):
        evaluate_detections(split, empty[:1])


def test_batches_and_subset(soda: tuple[Path, Path]) -> None:
    split = load_coco(*soda)
    batches = list(split.batches(4))
    assert [b[0].shape for b in batches] == [(4, 3, 40, 40), (2, 3, 40, 40)]
    assert torch.equal(batches[0][0][1], split.images[1]) and batches[1][2][0] is split.labels[4]
    shuffled = list(split.batches(6, np.random.default_rng(1)))[0]
    order = [next(i for i, im in enumerate(split.images) if torch.equal(im, x)) for x in shuffled[0]]
    assert sorted(order) == list(range(6)) and order != list(range(6))
    part = split.subset([3, 5])
    assert part.image_ids == [14, 16] and len(part.coco.getAnnIds()) == 3
    assert evaluate_detections(part, _gt_predictions(part))["mAP"] == pytest.approx(1.0)


def test_detection_info() -> None:
    info = DetectionInfo(class_names=("a", "b"), image_size=(48, 64))
    assert info.input_shape == (3, 48, 64) and info.num_classes == 2 and info.image_size == (48, 64)
    with pytest.raises(ConfigError):
        DetectionInfo(class_names=(), image_size=(8, 8))


# ---------------------------------------------------------------------------------------------------
# every bad input: one DatasetError naming the file, the first offending record and the count of the rest


def _mutate(fn):
    def apply(doc: dict) -> dict:
        doc = copy.deepcopy(doc)
        fn(doc)
        return doc
    return apply


def _set(obj: dict, key: str, value: object) -> None:
    obj[key] = value


BAD_DOCS = {
    "missing top-level key": (_mutate(lambda d: d.pop("annotations")), ["missing top-level key 'annotations'"]),
    "images not a list": (_mutate(lambda d: _set(d, "images", {})), ["images must be a list"]),
    "image not an object": (_mutate(lambda d: _set(d["images"], 1, 5)), ["images[1]: expected an object, got int"]),
    "image lacks keys": (_mutate(lambda d: (d["images"][2].pop("width"), d["images"][4].pop("file_name"))),
                         ["images[2] (id 13): missing 'width'", "1 more image lacks required keys"]),
    "image bad size": (_mutate(lambda d: _set(d["images"][0], "height", 0)),
                       ["images[0] (id 11): width and height must be positive integers"]),
    "duplicate image id": (_mutate(lambda d: (_set(d["images"][3], "id", 12), _set(d["images"][5], "id", 11))),
                           ["images[3] (id 12): duplicate image id 12 (also images[1])", "1 more duplicate image id"]),
    "annotation lacks keys": (_mutate(lambda d: (d["annotations"][1].pop("bbox"), d["annotations"][3].pop("image_id"),
                                                 d["annotations"][4].pop("category_id"))),
                              ["annotations[1] (id 101): missing 'bbox'", "2 more annotations lack required keys"]),
    "annotation id not int": (_mutate(lambda d: _set(d["annotations"][2], "image_id", "12")),
                              ["annotations[2] (id 102): image_id must be an integer, got '12'"]),
    "bbox not 4 numbers": (_mutate(lambda d: (_set(d["annotations"][0], "bbox", [1, 2, 3]),
                                              _set(d["annotations"][5], "bbox", ["a", 1, 2, 3]))),
                           ["annotations[0] (id 100): bbox must be 4 finite numbers", "got [1, 2, 3]",
                            "1 more annotation has an invalid bbox"]),
    "bbox empty": (_mutate(lambda d: _set(d["annotations"][2], "bbox", [1, 1, 0, 5])),
                   ["annotations[2] (id 102): bbox [1, 1, 0, 5] has width or height <= 0"]),
    "duplicate annotation id": (_mutate(lambda d: _set(d["annotations"][4], "id", 101)),
                                ["annotations[4] (id 101): duplicate annotation id 101 (also annotations[1])"]),
    "unknown category": (_mutate(lambda d: (_set(d["annotations"][2], "category_id", 99),
                                            _set(d["annotations"][6], "category_id", 7))),
                         ["annotations[2] (id 102): unknown category_id 99 (categories: 1, 2, 3)",
                          "1 more annotation names an unknown category"]),
    "unknown image": (_mutate(lambda d: _set(d["annotations"][6], "image_id", 1234)),
                      ["annotations[6] (id 106): image_id 1234 names no image"]),
    "box outside": (_mutate(lambda d: [_set(d["annotations"][k], "bbox", b) for k, b in
                                       ((3, [5, 5, 90, 20]), (4, [30, 30, 20, 2]), (7, [-3, 0, 5, 5]))]),
                    ["annotations[3] (id 103): bbox [5, 5, 90, 20] lies outside image 13 (40x40)",
                     "2 more annotations have boxes outside their images"]),
    "duplicate category": (_mutate(lambda d: d["categories"].append({"id": 1, "name": "again"})),
                           ["categories[3] (id 1): duplicate category id 1 (also categories[1])"]),
    "category lacks name": (_mutate(lambda d: d["categories"][0].pop("name")),
                            ["categories[0] (id 3): missing 'name'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_bad_documents_raise_one_clear_error(tmp_path: Path, case: str) -> None:
    mutate, fragments = BAD_DOCS[case]
    ann = _write(tmp_path, _soda_doc(), name=f"{case.replace(' ', '_')}.json")  # valid images on disk
    ann.write_text(json.dumps(mutate(_soda_doc())))
    with pytest.raises(DatasetError) as caught:
        load_coco(ann, tmp_path / "images")
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert message.startswith(f"{ann}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_files_and_filters(tmp_path: Path, soda: tuple[Path, Path]) -> None:
    ann, images = soda
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(DatasetError, match=rf"^{broken}:2: not valid JSON"):
        load_coco(broken, images)
    broken.write_text("[1, 2]")
    with pytest.raises(DatasetError,
                       match="expected a JSON object with images, annotations and categories, got a list"):
        load_coco(broken, images)
    with pytest.raises(DatasetError, match="no such annotation file"):
        load_coco(tmp_path / "nope.json", images)

    with pytest.raises(DatasetError) as caught:
        load_coco(ann, images, where={"period": "dusk"})
    assert str(caught.value).startswith(f"{ann}: where {{period: 'dusk'}} keeps no image of 6")
    assert "period: 'Daytime' (4), 'Night' (2)" in str(caught.value)
    with pytest.raises(DatasetError, match=r"no image has attribute 'perod' \(attributes present: city, location, "
                                           r"period, weather\)"):
        load_coco(ann, images, where={"perod": "night"})
    with pytest.raises(ConfigError, match="where: expected a mapping"):
        load_coco(ann, images, where=["night"])  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=r"categories \[9\] are not in the file"):
        load_coco(ann, images, categories=[1, 9])

    (images / "img_1.png").unlink()
    (images / "img_4.png").unlink()
    with pytest.raises(DatasetError) as caught:
        load_coco(ann, images)
    assert str(caught.value) == (f"{ann}: images[1] (id 12): image file {images / 'img_1.png'} does not exist; "
                                 f"1 more image file is missing")
    assert load_coco(ann, images, where={"period": "night"}).image_ids == [14, 16]  # only kept images must exist


def test_image_sizes_must_agree(tmp_path: Path) -> None:
    doc = _soda_doc()
    doc["images"][2].update(width=30, height=20)
    doc["annotations"][3]["bbox"] = [0, 0, 30, 20]
    ann = _write(tmp_path / "a", doc)
    with pytest.raises(DatasetError, match=r"images\[2\] \(id 13\) is 30x20 but images\[0\] \(id 11\) is 40x40: "
                                           r"the images of a split must share one size"):
        load_coco(ann, tmp_path / "a" / "images")
    assert load_coco(ann, tmp_path / "a" / "images", image_size=(32, 32)).images[2].shape == (3, 32, 32)
    ann = _write(tmp_path / "b", _soda_doc(), sizes={"img_3.png": (41, 40), "img_5.png": (40, 39)})
    with pytest.raises(DatasetError, match=r"images\[3\] \(id 14\): image file .*img_3.png is 41x40 but the record "
                                           r"says 40x40; 1 more image file differs"):
        load_coco(ann, tmp_path / "b" / "images")
    (tmp_path / "b" / "images" / "img_0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"images\[0\] \(id 11\): cannot read image file"):
        load_coco(ann, tmp_path / "b" / "images")


# ---------------------------------------------------------------------------------------------------
# shapes-detection


def test_generator_is_deterministic_and_writes_valid_coco(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    options = dict(train_images=10, val_images=4, image_size=(64, 64), seed=3, night_fraction=0.5)
    generate(tmp_path / "a", **options)
    generate(tmp_path / "b", **options)
    generate(tmp_path / "c", **{**options, "seed": 4})
    for split in ("train", "val"):
        assert (tmp_path / "a" / f"{split}.json").read_bytes() == (tmp_path / "b" / f"{split}.json").read_bytes()
    png = sorted((tmp_path / "a" / "train").iterdir())
    assert len(png) == 10 and all(p.read_bytes() == (tmp_path / "b" / "train" / p.name).read_bytes() for p in png)
    assert (tmp_path / "a" / "train.json").read_bytes() != (tmp_path / "c" / "train.json").read_bytes()

    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "a" / "train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    for image in coco.dataset["images"]:
        assert {"city", "location", "period", "weather"} <= set(image)
        anns = coco.imgToAnns[image["id"]]
        assert 1 <= len(anns) <= 4
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and 6 <= w <= 40
    periods = {im["period"] for im in coco.dataset["images"]}
    assert periods == {"daytime", "night"}


def test_shapes_task_loads_reloads_and_scores(tmp_path: Path) -> None:
    task = tasks.get("shapes-detection")(root=str(tmp_path), **SMALL)
    assert task.info == DetectionInfo(class_names=CLASSES, image_size=(64, 64))
    data = task.load()
    assert len(data.train) == 24 and len(data.val) == 12 and data.train.images[0].shape == (3, 64, 64)
    assert task.load() is data  # cached per process
    from automl.tasks import shapes_detection
    shapes_detection._load.cache_clear()
    again = ShapesDetectionTask(root=str(tmp_path), **SMALL).load()  # reads the files written the first time
    assert again is not data and again.val.image_ids == data.val.image_ids
    assert all(torch.equal(a, b) for a, b in zip(again.train.images, data.train.images))
    assert all(torch.equal(a, b) for a, b in zip(again.val.boxes, data.val.boxes))
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [task.folder.name]

    perfect = evaluate_detections(data.val, _gt_predictions(data.val))
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    shifted = evaluate_detections(data.val, [(b + 2.0, s, l) for b, s, l in _gt_predictions(data.val)])
    assert shifted["mAP"] < 0.8
    assert task.fingerprint() == ShapesDetectionTask(root=str(tmp_path), **SMALL).fingerprint()
    assert task.fingerprint() != ShapesDetectionTask(root=str(tmp_path), seed=1, **SMALL).fingerprint()


def test_shapes_day_to_night_split(tmp_path: Path) -> None:
    task = ShapesDetectionTask(root=str(tmp_path), night_fraction=0.5, train_where={"period": "daytime"},
                               val_where={"period": "night"}, **SMALL)
    data = task.load()
    assert data.train.attributes and all(a["period"] == "daytime" for a in data.train.attributes)
    assert data.val.attributes and all(a["period"] == "night" for a in data.val.attributes)
    assert len(data.train) < 24 and len(data.val) < 12
    night = torch.stack(data.val.images).mean()
    day = torch.stack(data.train.images).mean()
    assert night < 0.6 * day  # night images are darker
    with pytest.raises(ConfigError, match="val_where period \\['night'\\] keeps no image with night_fraction 0.0"):
        ShapesDetectionTask(root=str(tmp_path), val_where={"period": "night"})


@pytest.mark.parametrize("options, fragment", [
    ({"trian_images": 5}, "unknown options ['trian_images']"),
    ({"train_images": 0}, "train_images must be >= 1"),
    ({"image_size": 8}, "image_size must be an integer >= 32"),
    ({"night_fraction": 1.5}, "night_fraction must be a number in [0, 1]"),
    ({"val_where": "night"}, "val_where: expected a mapping"),
])
def test_shapes_bad_options(options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ShapesDetectionTask(**options)
    assert fragment in str(caught.value)


def _ensure_in_child(root: str, options: dict, queue) -> None:
    queue.put(str(ensure_dataset(Path(root), options)))


def _options(train_images: int) -> dict:
    task = ShapesDetectionTask(train_images=train_images, val_images=4)
    return task.generator_options()


def test_concurrent_generation_makes_one_complete_folder(tmp_path: Path, monkeypatch) -> None:
    from automl.tasks import shapes_detection
    real_generate = shapes_detection.generate
    runs = tmp_path.parent / f"{tmp_path.name}-runs.txt"

    def counted(folder: Path, **kw: object) -> None:  # forked children inherit the patch
        with runs.open("a") as f:
            f.write(f"{os.getpid()}\n")
        real_generate(folder, **kw)
    monkeypatch.setattr(shapes_detection, "generate", counted)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    options = _options(60)
    workers = [ctx.Process(target=_ensure_in_child, args=(str(tmp_path), options, queue)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    folders = {queue.get(timeout=5) for _ in workers}
    assert len(folders) == 1
    folder = Path(folders.pop())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, f".{folder.name}.lock"])
    assert json.loads((folder / "meta.json").read_text()) == options
    assert len(json.loads((folder / "train.json").read_text())["images"]) == 60
    assert len(list((folder / "train").iterdir())) == 60
    assert len(runs.read_text().split()) == 1  # the others waited for the lock, then reused the folder


def test_generation_recovers_after_a_kill(tmp_path: Path, monkeypatch) -> None:
    ctx = multiprocessing.get_context("fork")
    options = _options(3000)  # seconds of work: killed midway
    child = ctx.Process(target=_ensure_in_child, args=(str(tmp_path), options, ctx.Queue()))
    child.start()
    deadline = time.monotonic() + 20
    while not any(".tmp-" in p.name for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    final = tmp_path / ShapesDetectionTask(train_images=3000, val_images=4).folder.name
    assert not final.exists()  # nothing half-written under the final name
    assert any(".tmp-" in p.name for p in tmp_path.iterdir())

    from automl.tasks import shapes_detection
    real_generate = shapes_detection.generate

    def quick(folder: Path, **kw: object) -> None:  # the same folder logic, a smaller payload
        real_generate(folder, **{**kw, "train_images": 3})
    monkeypatch.setattr(shapes_detection, "generate", quick)
    assert ensure_dataset(tmp_path, options) == final  # the lock was freed by the kill
    assert (final / "meta.json").is_file() and len(list((final / "train").iterdir())) == 3
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())  # the killed run's leftovers are gone

    (final / "meta.json").unlink()  # an incomplete copy (e.g. put there by hand) is rebuilt, not reused
    (final / "train" / "000001.png").unlink()
    assert ensure_dataset(tmp_path, options) == final and (final / "train" / "000001.png").is_file()


# ---------------------------------------------------------------------------------------------------
# coco


def test_coco_task_reads_a_folder_and_filters(tmp_path: Path, soda: tuple[Path, Path], monkeypatch) -> None:
    ann, images = soda
    monkeypatch.chdir(ann.parent)
    task = tasks.get("coco")(train_annotations="ann.json", train_images="images", val_annotations=str(ann),
                             val_images=str(images), image_size=[32, 48], train_where={"period": "daytime"},
                             val_where={"period": "night"})
    assert task.info == DetectionInfo(class_names=("Pedestrian", "Cyclist", "Car"), image_size=(32, 48))
    data = task.load()
    assert data.train.image_ids == [11, 12, 13, 15] and data.val.image_ids == [14, 16]
    assert data.train.images[0].shape == (3, 32, 48) and data.val.images[0].shape == (3, 32, 48)
    assert evaluate_detections(data.val, _gt_predictions(data.val))["mAP"] == pytest.approx(1.0)
    assert task.load() is data
    subset = CocoTask(train_annotations=str(ann), train_images=str(images), val_annotations=str(ann),
                      val_images=str(images), image_size=None, categories=[3])
    assert subset.info.class_names == ("Car",) and subset.info.image_size == (40, 40)
    assert subset.load().train.labels[0].tolist() == [0]
    assert subset.fingerprint() != task.fingerprint()


def test_coco_task_errors(tmp_path: Path, soda: tuple[Path, Path]) -> None:
    ann, images = soda
    paths = dict(train_annotations=str(ann), train_images=str(images), val_annotations=str(ann),
                 val_images=str(images))
    with pytest.raises(ConfigError, match="unknown options \\['val_where_'\\]"):
        CocoTask(**paths, val_where_={"period": "night"})
    with pytest.raises(ConfigError, match="^val_annotations: coco: option 'val_annotations' .* is required"):
        CocoTask(**{**paths, "val_annotations": None})
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'none'}: train_images: coco: no such folder"):
        CocoTask(**{**paths, "train_images": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="image_size must be"):
        CocoTask(**paths, image_size=[0, 4])
    other = _soda_doc()
    other["categories"][2]["name"] = "Bicycle"
    val = _write(tmp_path / "val", other)
    with pytest.raises(DatasetError, match=rf"^{val}: category 2 is 'Bicycle' here but 'Cyclist'"):
        CocoTask(**{**paths, "val_annotations": str(val), "val_images": str(tmp_path / "val" / "images")}).load()
