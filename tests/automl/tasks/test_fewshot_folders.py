"""miniimagenet and image-folder-fewshot: few-shot pools read from folders, and one clear error per bad input."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from automl.components import construct
from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.episodic import fixed_episodes
from automl.tasks.fewshot_folders import ImageFolderFewshotTask, MiniImageNetTask

#: 9 classes: mini-ImageNet's CSVs put 4 in train, 2 in val and 3 in test
CLASSES = [f"n{c:08d}" for c in range(9)]
SPLITS = {"train": CLASSES[:4], "val": CLASSES[4:6], "test": CLASSES[6:]}
PER_CLASS = 6
EPISODES = {"n_way": 2, "k_shot": 1, "n_query": 2}


def _image(path: Path, seed: int, size: int = 8, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(path)


def write_miniimagenet(root: Path) -> Path:
    """A tiny mini-ImageNet layout: 9 classes x 6 random 8x8 images, CSVs of 4/2/3 classes."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, classes in SPLITS.items():
        lines = ["filename,label"]
        for cls in classes:
            for k in range(PER_CLASS):
                name = f"{cls}{k:08d}.jpg" if k % 2 else f"{cls}{k:08d}.png"
                _image(root / "images" / name, seed)
                seed += 1
                lines.append(f"{name},{cls}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def write_image_folder(root: Path, mode: str = "RGB") -> Path:
    """A tiny class-folder layout: 9 classes x 6 random 8x8 images (png, jpg and jpeg)."""
    seed = 100
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(PER_CLASS):
            _image(root / cls / f"{k}.{('png', 'jpg', 'JPEG')[k % 3]}", seed, mode=mode)
            seed += 1
    (root / ".hidden").mkdir(exist_ok=True)  # ignored: not a class
    (root / "README.txt").write_text("not a class")
    return root


def conformance_cases(tmp: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (quick options, options that change the data) for the task conformance suite; the folders
    are written only when ``tmp`` exists (collection calls this with a path that does not)."""
    mini, folder = tmp / "mini-imagenet", tmp / "image-folder"
    if tmp.exists():
        write_miniimagenet(mini)
        write_image_folder(folder)
    return {"miniimagenet": ({"root": str(mini), "image_size": 8, **EPISODES}, {"image_size": 6}),
            "image-folder-fewshot": ({"root": str(folder), "image_size": 8, **EPISODES}, {"split_seed": 1})}


def _message(exc: pytest.ExceptionInfo[BaseException]) -> str:
    return str(exc.value)


# ------------------------------------------------------------------------------------------ miniimagenet


def test_miniimagenet_pools_from_the_csvs(tmp_path):
    root = write_miniimagenet(tmp_path)
    task = construct(tasks.get("miniimagenet"), {"root": str(root), "image_size": 8, **EPISODES}, kind="task",
                     name="miniimagenet")
    assert task.info.input_shape == (3, 8, 8) and (task.info.n_way, task.info.n_query) == (2, 2)
    data = task.load()
    sizes = {"base": 4, "val": 2, "novel": 3}
    for name, n in sizes.items():
        pool = data.pool(name)
        assert pool.x.shape == (n * PER_CLASS, 3, 8, 8) and pool.x.dtype == torch.uint8
        assert pool.y.dtype == torch.int64 and pool.counts() == {c: PER_CLASS for c in pool.classes}
    # class ids: the label names' indices in sorted order over all CSVs
    assert data.base.classes == (0, 1, 2, 3) and data.val.classes == (4, 5) and data.novel.classes == (6, 7, 8)
    first = np.asarray(Image.open(root / "images" / f"{CLASSES[0]}00000000.png").convert("RGB"))
    assert torch.equal(data.base.x[0], torch.from_numpy(first.copy()).permute(2, 0, 1))
    task.check()
    episode = fixed_episodes(data.novel, 2, 1, 2, count=3)[0]
    assert episode.support_x.dtype == torch.float32 and float(episode.support_x.max()) <= 1.0
    assert episode.query_x.shape == (4, 3, 8, 8)


def test_miniimagenet_resizes_and_info_reads_nothing(tmp_path):
    root = write_miniimagenet(tmp_path)
    assert MiniImageNetTask(root=str(root), image_size=5).load().base.x.shape == (24, 3, 5, 5)
    default = MiniImageNetTask(root=str(root))
    assert default.info.input_shape == (3, 84, 84) and (default.info.n_way, default.info.n_query) == (5, 15)
    for file in (root / "images").iterdir():
        file.write_bytes(b"garbage")  # info and fingerprint never open an image
    assert default.info.input_shape == (3, 84, 84) and default.fingerprint()


def test_miniimagenet_fingerprint_follows_the_csvs(tmp_path):
    root = write_miniimagenet(tmp_path)
    before = MiniImageNetTask(root=str(root)).fingerprint()
    assert before == MiniImageNetTask(root=str(root)).fingerprint()
    assert MiniImageNetTask(root=str(root), image_size=32).fingerprint() != before
    csv = root / "test.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
    assert MiniImageNetTask(root=str(root)).fingerprint() != before


def test_miniimagenet_missing_root_csv_or_images(tmp_path):
    with pytest.raises(ConfigError, match="'root'") as err:
        MiniImageNetTask()
    assert err.value.field == "root"
    with pytest.raises(ConfigError, match="no such folder") as err:
        MiniImageNetTask(root=str(tmp_path / "nowhere"))
    assert err.value.field == "root" and "nowhere" in _message(err)
    root = write_miniimagenet(tmp_path / "mini")
    (root / "val.csv").unlink()
    with pytest.raises(ConfigError, match="no such file") as err:
        MiniImageNetTask(root=str(root))
    assert str(root / "val.csv") in _message(err)
    root = write_miniimagenet(tmp_path / "mini2")
    for file in (root / "images").iterdir():
        file.unlink()
    (root / "images").rmdir()
    with pytest.raises(ConfigError, match="no such folder") as err:
        MiniImageNetTask(root=str(root))
    assert str(root / "images") in _message(err)


def test_miniimagenet_bad_header(tmp_path):
    root = write_miniimagenet(tmp_path)
    csv = root / "val.csv"
    csv.write_text("image,class\n" + "\n".join(csv.read_text().splitlines()[1:]))
    with pytest.raises(DatasetError) as err:
        MiniImageNetTask(root=str(root)).load()
    assert _message(err).startswith(f"{csv}:1: ") and "filename,label" in _message(err)


def test_miniimagenet_row_naming_a_missing_image(tmp_path):
    root = write_miniimagenet(tmp_path)
    for k in (4, 5):  # lines 6 and 7 of train.csv (the header is line 1)
        (root / "images" / f"{CLASSES[0]}{k:08d}.{'jpg' if k % 2 else 'png'}").unlink()
    with pytest.raises(DatasetError) as err:
        MiniImageNetTask(root=str(root), image_size=8).load()
    message = _message(err)
    assert message.startswith(f"{root / 'train.csv'}:6: filename: no image images/{CLASSES[0]}00000004.png")
    assert "1 more row names a missing image" in message
    assert err.value.line == 6 and err.value.field == "filename"


def test_miniimagenet_label_in_two_splits(tmp_path):
    root = write_miniimagenet(tmp_path)
    csv = root / "test.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + f",{CLASSES[1]}"  # a test row labelled with a train class
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        MiniImageNetTask(root=str(root)).load()
    message = _message(err)
    assert message.startswith(f"{csv}:4: label: label '{CLASSES[1]}' is also in train.csv (line 8)")
    assert "disjoint" in message


def test_miniimagenet_unreadable_image_and_bad_rows(tmp_path):
    root = write_miniimagenet(tmp_path)
    (root / "images" / f"{CLASSES[4]}00000002.png").write_bytes(b"not an image")
    (root / "images" / f"{CLASSES[4]}00000003.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        MiniImageNetTask(root=str(root), image_size=8).load()
    message = _message(err)
    assert message.startswith(f"{root / 'val.csv'}:4: filename: cannot read image images/{CLASSES[4]}00000002.png")
    assert message.endswith("; 1 more image cannot be read")
    csv = root / "train.csv"
    lines = csv.read_text().splitlines()
    lines[2] += ",extra"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="expected 2 columns") as err:
        MiniImageNetTask(root=str(root)).load()
    assert err.value.line == 3 and err.value.source == str(csv)


def test_miniimagenet_check_names_the_task_the_pool_and_its_csv(tmp_path):
    root = write_miniimagenet(tmp_path)
    with pytest.raises(ConfigError) as err:
        MiniImageNetTask(root=str(root), image_size=8, n_way=3, n_query=2).check()
    message = _message(err)
    assert "miniimagenet: the val pool has 2 classes; 3-way episodes need 3" in message
    assert str(root / "val.csv") in message and err.value.field == "n_way"
    with pytest.raises(ConfigError) as err:
        MiniImageNetTask(root=str(root), image_size=8, n_way=2, k_shot=2, n_query=5).check()
    message = _message(err)
    assert "miniimagenet: the base pool has 0 classes with at least 7 images (k_shot + n_query" in message
    assert str(root / "train.csv") in message


def test_bad_options_name_the_field(tmp_path):
    root = write_miniimagenet(tmp_path / "mini")
    for options, field in (({"image_size": 0}, "image_size"), ({"n_way": 1}, "n_way"), ({"k_shot": 1.5}, "k_shot"),
                           ({"n_query": 0}, "n_query"), ({"shots": 3}, "shots")):
        with pytest.raises(ConfigError) as err:
            MiniImageNetTask(root=str(root), **options)
        assert err.value.field == field, options


# ----------------------------------------------------------------------------------- image-folder-fewshot


def test_image_folder_deals_classes_by_a_seeded_shuffle(tmp_path):
    root = write_image_folder(tmp_path)
    task = ImageFolderFewshotTask(root=str(root), image_size=8, **EPISODES)
    assert task.info.input_shape == (3, 8, 8)
    assert (len(task.base), len(task.val), len(task.novel)) == (5, 2, 2)  # 0.5, 0.25, 0.25 of 9, rounded
    assert sorted([*task.base, *task.val, *task.novel]) == CLASSES
    again = ImageFolderFewshotTask(root=str(root), **EPISODES)
    assert (again.base, again.val, again.novel) == (task.base, task.val, task.novel)
    other = ImageFolderFewshotTask(root=str(root), split_seed=1, **EPISODES)
    assert (other.base, other.val, other.novel) != (task.base, task.val, task.novel)
    data = task.load()
    for name in ("base", "val", "novel"):
        pool = data.pool(name)
        classes = getattr(task, name)
        assert pool.x.shape == (len(classes) * PER_CLASS, 3, 8, 8) and pool.x.dtype == torch.uint8
        assert pool.classes == tuple(sorted(CLASSES.index(c) for c in classes))
    task.check()
    sixty = ImageFolderFewshotTask(root=str(root), split=[0.6, 0.2, 0.2], **EPISODES)
    assert (len(sixty.base), len(sixty.val), len(sixty.novel)) == (5, 2, 2)


def test_image_folder_grayscale_and_explicit_lists(tmp_path):
    root = write_image_folder(tmp_path, mode="L")
    lists = {"base": CLASSES[:3], "val": CLASSES[3:5], "novel": CLASSES[7:]}
    task = ImageFolderFewshotTask(root=str(root), image_size=4, grayscale=True, **lists, **EPISODES)
    assert task.info.input_shape == (1, 4, 4) and task.split is None
    data = task.load()
    assert data.base.x.shape == (18, 1, 4, 4) and data.novel.classes == (5, 6)  # ids over the classes in use
    rgb = ImageFolderFewshotTask(root=str(root), image_size=4, **lists, **EPISODES).load()
    assert rgb.base.x.shape == (18, 3, 4, 4)
    assert torch.equal(rgb.base.x[:, 0], data.base.x[:, 0])  # grey images read as RGB: equal channels


def test_image_folder_bad_class_lists_and_splits(tmp_path):
    root = write_image_folder(tmp_path)
    lists = {"base": CLASSES[:3], "val": CLASSES[3:5], "novel": CLASSES[5:]}
    cases = [
        ({**lists, "split": [0.5, 0.25, 0.25]}, "split", "not both"),
        ({"base": lists["base"], "val": lists["val"]}, "novel", "novel is missing"),
        ({**lists, "val": ["n00000003", "cat"]}, "val", "'cat'"),
        ({**lists, "novel": [*CLASSES[5:], CLASSES[0]]}, "novel", "share class(es) ['n00000000']"),
        ({**lists, "base": []}, "base", "non-empty list"),
        ({"split": [0.5, 0.5]}, "split", "three positive fractions"),
        ({"split": [0.6, 0.3, 0.3]}, "split", "summing to 1"),
        ({"split": [0.9, 0.05, 0.05]}, "split", "every pool needs a class"),
        ({"grayscale": "yes"}, "grayscale", "true or false"),
        ({"split_seed": -1}, "split_seed", ">= 0"),
    ]
    for options, field, text in cases:
        with pytest.raises(ConfigError) as err:
            ImageFolderFewshotTask(root=str(root), **options)
        assert err.value.field == field and text in _message(err), (options, _message(err))


def test_image_folder_empty_class_unreadable_image_and_missing_root(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        ImageFolderFewshotTask(root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no class sub-folders"):
        ImageFolderFewshotTask(root=str(tmp_path / "empty"))
    root = write_image_folder(tmp_path / "folders")
    for cls in (CLASSES[2], CLASSES[5]):
        for file in (root / cls).iterdir():
            file.unlink()
    (root / CLASSES[5] / "notes.txt").write_text("no image here")
    task = ImageFolderFewshotTask(root=str(root), **EPISODES)
    with pytest.raises(DatasetError) as err:
        task.load()
    message = _message(err)
    assert message.startswith(f"{root / CLASSES[2]}: root: class folder '{CLASSES[2]}' holds no png/jpg/jpeg image")
    assert message.endswith("; 1 more class folder holds no image")
    root = write_image_folder(tmp_path / "broken")
    (root / CLASSES[3] / "1.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError) as err:
        ImageFolderFewshotTask(root=str(root), image_size=8, **EPISODES).load()
    assert _message(err).startswith(f"{root / CLASSES[3] / '1.jpg'}: cannot read the image")


def test_image_folder_check_names_the_task_and_pool(tmp_path):
    root = write_image_folder(tmp_path)
    with pytest.raises(ConfigError) as err:
        ImageFolderFewshotTask(root=str(root), image_size=8, n_way=3, n_query=2).check()
    assert "image-folder-fewshot: the val pool has 2 classes; 3-way episodes need 3" in _message(err)
    with pytest.raises(ConfigError, match="image-folder-fewshot: the base pool has 0 classes with at least 16"):
        ImageFolderFewshotTask(root=str(root), image_size=8, n_way=2).check()


def test_image_folder_fingerprint_follows_the_file_list(tmp_path):
    root = write_image_folder(tmp_path)
    before = ImageFolderFewshotTask(root=str(root)).fingerprint()
    assert before == ImageFolderFewshotTask(root=str(root)).fingerprint()
    assert ImageFolderFewshotTask(root=str(root), grayscale=True).fingerprint() != before
    _image(root / CLASSES[0] / "extra.png", 999)
    after = ImageFolderFewshotTask(root=str(root)).fingerprint()
    assert after != before
    stat = (root / CLASSES[0] / "extra.png").stat()
    os.utime(root / CLASSES[0] / "extra.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert ImageFolderFewshotTask(root=str(root)).fingerprint() != after


def test_episode_options_do_not_read_the_images_again(tmp_path):
    root = write_miniimagenet(tmp_path / "mini")
    a = MiniImageNetTask(root=str(root), image_size=8, **EPISODES).load()
    assert MiniImageNetTask(root=str(root), image_size=8, n_way=3).load() is a
    folder = write_image_folder(tmp_path / "folder")
    b = ImageFolderFewshotTask(root=str(folder), image_size=8, **EPISODES).load()
    assert ImageFolderFewshotTask(root=str(folder), image_size=8, n_query=4).load() is b
    (folder / CLASSES[0] / "._0.png").write_bytes(b"macOS resource fork")  # hidden files are not images
    assert ImageFolderFewshotTask(root=str(folder), image_size=8).load() is b
