"""once / once-synthetic: the ONCE layout read as released, the seeded generator that writes it (round
trip), the unlabeled stream, and one clear error per bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

import automl.tasks.once as once_module
from automl.components import construct
from automl.errors import ConfigError, DatasetError
from automl.tasks.base import tasks
from automl.tasks.detection3d import Detection3DData, Detection3DInfo, Detection3DTask, Frame3D
from automl.tasks.once import OnceSyntheticTask, OnceTask
from automl.tasks.once_eval import ONCE_CLASSES
from automl.tasks.once_format import CAMERAS, read_sequence, sequence_json, split_path
from automl.tasks.once_synthetic import CLASS_SIZES, EXTENT, IMAGE_SIZE, synthesize_frame, write_synthetic_once
from automl.testing.tasks import TASK_CHECKS

TINY: dict[str, Any] = {"train_frames": 6, "val_frames": 3, "test_frames": 3, "raw_frames": 6,
                        "frames_per_sequence": 3}
#: a range that keeps every generated point (no cropping)
EVERYTHING = [-500.0, -500.0, -50.0, 500.0, 500.0, 50.0]


def conformance_cases(tmp: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (quick options, options that change the data) for the task conformance suite; the ONCE root
    is written only when ``tmp`` exists (collection calls this with a path that does not)."""
    root = tmp / "ONCE"
    if tmp.exists() and not root.exists():
        write_synthetic_once(root, seed=5, **TINY)
    return {"once": ({"root": str(root)}, {"max_frames": 2}),
            "once-synthetic": ({"root": str(tmp / "generated"), **TINY}, {"seed": 1})}


@pytest.mark.parametrize("check", TASK_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["once", "once-synthetic"])
def test_passes_the_task_conformance_suite(tmp_path, name, check):
    options, changed = conformance_cases(tmp_path)[name]
    check(name, options, changed)


def make(name: str, **options: Any) -> Any:
    return construct(tasks.get(name), options, kind="task", name=name)


def tiny_root(tmp_path: Path, seed: int = 0, **overrides: Any) -> Path:
    root = tmp_path / "ONCE"
    write_synthetic_once(root, seed=seed, **{**TINY, **overrides})
    return root


def all_frames(data: Detection3DData) -> Iterator[Frame3D]:
    for split in (data.train, data.val, data.test):
        yield from (split.frames if split is not None else ())


# ------------------------------------------------------------------------------------------------ layout

def test_the_layout_is_onces(tmp_path):
    layout = write_synthetic_once(tmp_path / "ONCE", seed=0, **TINY)
    root = layout.root
    assert split_path(root, "train").read_text() == "000000\n000001\n"  # split files list sequence ids
    assert layout.splits == {"train": ("000000", "000001"), "val": ("001000",), "test": ("002000",),
                             "raw_small": ("003000", "003001")}
    doc = json.loads(sequence_json(root, "000000").read_text())
    assert set(doc) == {"meta_info", "calib", "frames"}
    assert set(doc["calib"]) == set(CAMERAS)
    assert {"cam_to_velo", "cam_intrinsic", "distortion"} <= set(doc["calib"]["cam01"])
    assert np.asarray(doc["calib"]["cam01"]["cam_to_velo"]).shape == (4, 4)
    frame = doc["frames"][0]
    assert set(frame) == {"frame_id", "pose", "annos"} and len(frame["frame_id"]) == 13
    assert set(frame["annos"]) == {"names", "boxes_3d", "boxes_2d"} and set(frame["annos"]["boxes_2d"]) == set(CAMERAS)
    assert all(len(row) == 7 for row in frame["annos"]["boxes_3d"])
    bin_path = root / "data" / "000000" / "lidar_roof" / f"{frame['frame_id']}.bin"
    assert bin_path.stat().st_size % 16 == 0
    raw = json.loads(sequence_json(root, "003000").read_text())
    assert all("annos" not in f for f in raw["frames"])  # raw frames are unlabeled
    assert not (root / "data" / "000000" / "cam01").exists()  # no images unless asked


def test_round_trip_the_loader_reads_what_the_generator_made(tmp_path):
    layout = write_synthetic_once(tmp_path / "ONCE", seed=3, **TINY)
    data = OnceTask(root=str(layout.root), point_range=EVERYTHING).load()
    loaded = {f.frame_id: f for f in all_frames(data)}
    expected = 0
    for split in ("train", "val", "test"):
        for seq in layout.splits[split]:
            for index, frame_id in enumerate(layout.frames[seq]):
                made = synthesize_frame(3, int(seq), index)
                assert made.frame_id == frame_id
                got = loaded[frame_id]
                assert got.points.dtype == torch.float32 and got.points.shape[1] == 4
                assert np.array_equal(got.points.numpy(), made.points)
                assert np.array_equal(got.boxes.numpy(), made.boxes)
                assert got.attributes["names"] == made.names
                assert got.labels.tolist() == [ONCE_CLASSES.index(n) for n in made.names]
                assert got.attributes["sequence_id"] == seq and got.attributes["frame_id"] == frame_id
                expected += 1
    assert expected == len(loaded) == 12
    # once-synthetic generates through the same writer and reads through the same loader
    synthetic = OnceSyntheticTask(root=str(tmp_path / "gen"), seed=3, point_range=EVERYTHING, **TINY).load()
    assert [f.frame_id for f in all_frames(synthetic)] == [f.frame_id for f in all_frames(data)]
    for a, b in zip(all_frames(synthetic), all_frames(data)):
        assert torch.equal(a.points, b.points) and torch.equal(a.boxes, b.boxes)


def test_points_are_cropped_to_the_point_range_and_boxes_are_kept(tmp_path):
    task = OnceSyntheticTask(root=str(tmp_path), **TINY)
    low, high = torch.tensor(task.info.point_range[:3]), torch.tensor(task.info.point_range[3:])
    made = {m.frame_id: m for m in (synthesize_frame(0, seq, i) for seq in (0, 1, 1000, 2000) for i in range(3))}
    dropped = 0
    for frame in all_frames(task.load()):
        xyz = frame.points[:, :3]
        assert bool(((xyz >= low) & (xyz < high)).all())
        full = made[frame.frame_id].points
        inside = np.all((full[:, :3] >= low.numpy()) & (full[:, :3] < high.numpy()), axis=1)
        assert np.array_equal(frame.points.numpy(), full[inside])
        dropped += int((~inside).sum())
        assert torch.equal(frame.boxes, torch.from_numpy(made[frame.frame_id].boxes))  # boxes are not cropped
    assert dropped > 0  # the ground rings reach past 51.2 m: cropping did something
    narrow = OnceSyntheticTask(root=str(tmp_path), point_range=[-10, -10, -3, 10, 10, 1], **TINY).load()
    assert all(float(f.points[:, :2].abs().max()) < 10 for f in narrow.train.frames)


def test_frames_extend_and_more_frames_do_not_change_the_first_ones(tmp_path):
    small = write_synthetic_once(tmp_path / "a", seed=1, **TINY)
    more = write_synthetic_once(tmp_path / "b", seed=1, **{**TINY, "train_frames": 9})
    a = OnceTask(root=str(small.root)).load().train.frames
    b = OnceTask(root=str(more.root)).load().train.frames
    assert len(b) == 9 and all(torch.equal(x.points, y.points) for x, y in zip(a, b))
    other = OnceTask(root=str(write_synthetic_once(tmp_path / "c", seed=2, **TINY).root)).load().train.frames
    assert not torch.equal(a[0].points, other[0].points)


def test_the_generated_scenes_are_realistic():
    frames = [synthesize_frame(0, seq, i) for seq in range(3) for i in range(12)]
    distances = np.concatenate([np.hypot(f.boxes[:, 0], f.boxes[:, 1]) for f in frames])
    assert (distances < 30).any() and ((distances >= 30) & (distances < 50)).any() and (distances >= 50).any()
    assert 5 <= distances.min() and distances.max() < 71
    names = {n for f in frames for n in f.names}
    assert names == set(ONCE_CLASSES)
    for f in frames:
        assert 3 <= len(f.boxes) <= 8 and 2500 <= len(f.points) <= 9000
        assert f.points.dtype == np.float32 and 0 <= f.points[:, 3].min() and f.points[:, 3].max() <= 1
        assert (np.abs(f.boxes[:, :2]) < EXTENT).all()
        ground = f.boxes[:, 2] - f.boxes[:, 5] / 2
        assert np.allclose(ground, ground[0], atol=1e-5)  # every box stands on the ground: z = ground + h/2
        for name, box in zip(f.names, f.boxes):
            assert np.allclose(box[3:6], CLASS_SIZES[name], rtol=0.09)
        centres, radii = f.boxes[:, :2], 0.5 * np.hypot(f.boxes[:, 3], f.boxes[:, 4])
        for i in range(len(centres)):
            for j in range(i):
                assert np.hypot(*(centres[i] - centres[j])) > radii[i] + radii[j]  # no two boxes overlap
    headings = np.concatenate([f.boxes[:, 6] for f in frames])
    assert headings.min() < -2 and headings.max() > 2


def test_cameras_are_written_and_loaded_only_when_asked(tmp_path):
    task = OnceSyntheticTask(root=str(tmp_path), train_frames=2, val_frames=1, test_frames=0, raw_frames=0,
                             cameras=True)
    data = task.load()
    assert data.test is None
    images = data.train.frames[0].attributes["images"]
    assert set(images) == set(CAMERAS)
    assert all(im.dtype == torch.uint8 and im.shape == (IMAGE_SIZE[1], IMAGE_SIZE[0], 3) for im in images.values())
    assert set(data.train.frames[0].attributes["calib"]) == set(CAMERAS)
    sequence = read_sequence(task.folder, "000000")
    boxes_2d = sequence.frames[0].annos.boxes_2d
    assert set(boxes_2d) == set(CAMERAS) and all(b.shape == (len(sequence.frames[0].annos), 4)
                                                 for b in boxes_2d.values())
    assert (np.concatenate(list(boxes_2d.values()))[:, 0] >= 0).any()  # some objects are in some camera
    plain = OnceTask(root=str(task.folder), test_fraction=0).load()  # the same root without cameras: no images
    assert "images" not in plain.train.frames[0].attributes


# ------------------------------------------------------------------------------------------------ splits

def test_the_test_split_is_its_own_sequences(tmp_path):
    data = OnceTask(root=str(tiny_root(tmp_path))).load()
    seqs = {name: {f.attributes["sequence_id"] for f in split.frames}
            for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    assert seqs == {"train": {"000000", "000001"}, "val": {"001000"}, "test": {"002000"}}


def _strip_annos(root: Path, seq: str) -> None:
    path = sequence_json(root, seq)
    doc = json.loads(path.read_text())
    for frame in doc["frames"]:
        frame.pop("annos", None)
    path.write_text(json.dumps(doc))


def test_without_test_annotations_training_sequences_are_held_out(tmp_path):
    root = tiny_root(tmp_path, train_frames=12)  # 4 training sequences
    _strip_annos(root, "002000")  # as ONCE's released test split: no annotations
    data = OnceTask(root=str(root)).load()
    assert data.test is not None
    train = {f.attributes["sequence_id"] for f in data.train.frames}
    test = {f.attributes["sequence_id"] for f in data.test.frames}
    val = {f.attributes["sequence_id"] for f in data.val.frames}
    assert len(test) == 1 and test < {"000000", "000001", "000002", "000003"}  # round(0.2 * 4) = 1 sequence
    assert not test & train and not test & val and len(train) == 3
    held = [{f.attributes["sequence_id"] for f in OnceTask(root=str(root), split_seed=s).load().test.frames}
            for s in range(6)]
    assert held[0] == test and len({min(h) for h in held}) > 1  # split_seed picks which sequences
    assert OnceTask(root=str(root), test_fraction=0).load().test is None
    assert len(OnceTask(root=str(root), test_fraction=0.5).load().test.frames) == 6
    with pytest.raises(DatasetError, match="cannot hold out"):
        OnceTask(root=str(tiny_root(tmp_path / "one", train_frames=3)), test_split=None).load()


def test_a_sequence_in_two_splits_is_an_error(tmp_path):
    root = tiny_root(tmp_path)
    split_path(root, "val").write_text("001000\n000001\n")
    with pytest.raises(DatasetError, match="sequence '000001' is in both the train and the val split") as info:
        OnceTask(root=str(root)).load()
    assert "val.txt" in str(info.value)


# ------------------------------------------------------------------------------------------------ unlabeled

def test_the_unlabeled_stream_is_lazy_seeded_resumable_and_unlabeled(tmp_path, monkeypatch):
    task = OnceSyntheticTask(root=str(tmp_path), **TINY)
    assert task.has_unlabeled
    labeled = {f.frame_id for f in all_frames(task.load())}
    reads: list[Path] = []
    real = once_module.read_points
    monkeypatch.setattr(once_module, "read_points", lambda path, **kw: reads.append(path) or real(path, **kw))
    stream = task.unlabeled_frames(seed=0)
    assert reads == []  # nothing is read before the first frame is asked for
    first = next(stream)
    assert len(reads) == 1 and first.boxes.shape == (0, 7) and first.labels.shape == (0,)
    assert first.attributes["names"] == () and first.attributes["sequence_id"] in ("003000", "003001")
    order = [f.frame_id for f in task.unlabeled_frames(seed=0)]
    assert order[0] == first.frame_id and len(order) == 6 and not set(order) & labeled
    assert order == [f.frame_id for f in task.unlabeled_frames(seed=0)]  # seeded
    others = [[f.frame_id for f in task.unlabeled_frames(seed=s)] for s in (1, 2, 3)]
    assert any(o != order for o in others) and all(sorted(o) == sorted(order) for o in others)
    assert [f.frame_id for f in task.unlabeled_frames(seed=0, start=4)] == order[4:]  # resumes at position 4
    assert [f.frame_id for f in task.unlabeled_frames(seed=0, start=1, limit=2)] == order[1:3]
    assert list(task.unlabeled_frames(seed=0, start=10)) == []
    low, high = torch.tensor(task.info.point_range[:3]), torch.tensor(task.info.point_range[3:])
    assert all(bool(((f.points[:, :3] >= low) & (f.points[:, :3] < high)).all())
               for f in task.unlabeled_frames())
    with pytest.raises(ConfigError, match="start"):
        task.unlabeled_frames(start=-1)


def test_the_unlabeled_stream_never_yields_labeled_frames_or_sequences(tmp_path):
    root = tiny_root(tmp_path)
    split_path(root, "raw_small").write_text("003000\n003001\n000000\n")  # a labeled sequence listed as raw
    path = sequence_json(root, "003000")  # and an annotated frame in a raw sequence
    doc = json.loads(path.read_text())
    doc["frames"][0]["annos"] = {"names": ["Car"], "boxes_3d": [[10, 0, -1, 4.5, 1.9, 1.6, 0]]}
    path.write_text(json.dumps(doc))
    stream = [f.frame_id for f in OnceTask(root=str(root)).unlabeled_frames(seed=0)]
    assert len(stream) == 5 and doc["frames"][0]["frame_id"] not in stream
    assert not {f.attributes["sequence_id"] for f in OnceTask(root=str(root)).unlabeled_frames()} - {"003000", "003001"}


def test_tasks_without_an_unlabeled_stream_say_so(tmp_path):
    task = OnceSyntheticTask(root=str(tmp_path), **{**TINY, "raw_frames": 0})
    assert not task.has_unlabeled
    with pytest.raises(ConfigError, match="no unlabeled frames"):
        next(task.unlabeled_frames())
    once = OnceTask(root=str(task.folder), unlabeled_split=None)
    assert not once.has_unlabeled
    with pytest.raises(ConfigError, match="no unlabeled frames"):
        once.unlabeled_frames()
    assert not OnceTask(root=str(task.folder)).has_unlabeled  # raw_small.txt lists nothing

    class Plain(Detection3DTask):
        info = Detection3DInfo(("car",), 4, (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))

        def load(self) -> Detection3DData:
            raise NotImplementedError

    assert not Plain().has_unlabeled
    with pytest.raises(ConfigError, match="task Plain has no unlabeled frames"):
        Plain().unlabeled_frames()


# ------------------------------------------------------------------------------------------------ bad data

def _edit_json(root: Path, seq: str, edit: Any) -> Path:
    path = sequence_json(root, seq)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=1))
    return path


def _first_frame_id(root: Path, seq: str = "000001") -> str:
    return str(json.loads(sequence_json(root, seq).read_text())["frames"][0]["frame_id"])


def test_a_frame_without_its_point_cloud_is_an_error(tmp_path):
    root = tiny_root(tmp_path)
    fid = _first_frame_id(root)
    (root / "data" / "000001" / "lidar_roof" / f"{fid}.bin").unlink()
    with pytest.raises(DatasetError) as info:
        OnceTask(root=str(root)).load()
    message = str(info.value)
    assert "000001.json" in message and f"frames[0] (frame_id '{fid}')" in message and "no point cloud" in message


def test_a_point_cloud_whose_frame_is_missing_from_its_sequence_json_is_an_error(tmp_path):
    root = tiny_root(tmp_path)
    fid = _first_frame_id(root)
    _edit_json(root, "000001", lambda doc: doc["frames"].pop(0))
    for action in (lambda t: t.load(), lambda t: t.check()):
        with pytest.raises(DatasetError) as info:
            action(OnceTask(root=str(root)))
        message = str(info.value)
        assert f"{fid}.bin" in message and f"frame id '{fid}'" in message
        assert "missing from its sequence JSON" in message


def test_a_point_cloud_of_the_wrong_size_is_an_error(tmp_path):
    root = tiny_root(tmp_path)
    fid = _first_frame_id(root)
    path = root / "data" / "000001" / "lidar_roof" / f"{fid}.bin"
    path.write_bytes(path.read_bytes() + b"\0" * 12)
    with pytest.raises(DatasetError) as info:
        OnceTask(root=str(root)).load()
    message = str(info.value)
    assert str(path) in message and "not a multiple of 16" in message and f"frame_id '{fid}'" in message


@pytest.mark.parametrize("edit, expected", [
    (lambda a: a["boxes_3d"][1].pop(), r"frames\[2\] \(frame_id '\d+'\): annos.boxes_3d\[1\] has 6 values, "
                                       r"expected 7"),
    (lambda a: a["names"].pop(), r"frames\[2\] \(frame_id '\d+'\): annos has \d+ names but \d+ boxes_3d rows"),
    (lambda a: a["names"].__setitem__(0, "Tram"), r"frames\[2\] \(frame_id '\d+'\): annos.names\[0\] is 'Tram', "
                                                  r"not a ONCE class"),
    (lambda a: a["boxes_3d"][0].__setitem__(3, 0.0), r"annos.boxes_3d\[0\] has l, w, h .*each must be > 0"),
])
def test_bad_annotations_name_the_file_frame_and_row(tmp_path, edit, expected):
    root = tiny_root(tmp_path)
    path = _edit_json(root, "000001", lambda doc: edit(doc["frames"][2]["annos"]))
    with pytest.raises(DatasetError, match=expected) as info:
        OnceTask(root=str(root)).load()
    assert str(info.value).startswith(str(path.resolve()))


def test_one_error_counts_the_other_records_with_the_same_problem(tmp_path):
    root = tiny_root(tmp_path)

    def edit(doc: dict[str, Any]) -> None:
        for frame in doc["frames"]:
            frame["annos"]["names"][0] = "Tram"

    _edit_json(root, "000000", edit)
    with pytest.raises(DatasetError, match=r"frames\[0\] .*'Tram'.*; 2 more records with this problem"):
        OnceTask(root=str(root)).load()


def test_a_split_file_naming_a_missing_sequence_is_an_error(tmp_path):
    root = tiny_root(tmp_path)
    split_path(root, "train").write_text("000000\n\n000007\n")
    with pytest.raises(DatasetError) as info:
        OnceTask(root=str(root)).check()
    message = str(info.value)
    assert message.startswith(f"{split_path(root, 'train')}:3: ") and "sequence '000007' has no folder" in message
    shutil.rmtree(root / "data" / "000001" / "lidar_roof")
    (root / "data" / "000001" / "000001.json").unlink()
    split_path(root, "train").write_text("000000\n000001\n")
    with pytest.raises(DatasetError, match=r"train.txt:2: sequence '000001' has no sequence JSON"):
        OnceTask(root=str(root)).load()
    split_path(root, "train").write_text("000000\n")
    split_path(root, "val").unlink()
    with pytest.raises(DatasetError, match=r"val.txt: no such split file"):
        OnceTask(root=str(root)).check()


def test_malformed_json_names_the_file_and_line(tmp_path):
    root = tiny_root(tmp_path)
    path = sequence_json(root, "001000")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"frame_id"', 'frame_id', 1)
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"001000.json:3: not valid JSON") as info:
        OnceTask(root=str(root)).load()
    assert info.value.line == 3


def test_check_and_options(tmp_path):
    root = tiny_root(tmp_path)
    OnceTask(root=str(root)).check()
    with pytest.raises(ConfigError, match="root.*required"):
        make("once")
    with pytest.raises(ConfigError, match="no such folder") as info:
        make("once", root=str(tmp_path / "nowhere"))
    assert info.value.field == "root"
    with pytest.raises(ConfigError, match="not a ONCE root"):
        make("once", root=str(tmp_path)).check()
    for options, field in (({"voxel_size": [0.2, 0.0, 8.0]}, "voxel_size"), ({"voxel_size": [0.2, 8.0]}, "voxel_size"),
                           ({"point_range": [0, 0, 0, -1, 1, 1]}, "point_range"), ({"max_frames": 0}, "max_frames"),
                           ({"test_fraction": 1.0}, "test_fraction"), ({"cameras": "yes"}, "cameras"),
                           ({"train_split": "../x"}, "train_split")):
        with pytest.raises(ConfigError) as info:
            make("once", root=str(root), **options)
        assert info.value.field == field, options
    for options, field in (({"train_frames": 0}, "train_frames"), ({"seed": -1}, "seed"),
                           ({"frames_per_sequence": 2.5}, "frames_per_sequence"), ({"cameras": 1}, "cameras")):
        with pytest.raises(ConfigError) as info:
            make("once-synthetic", root=str(tmp_path), **options)
        assert info.value.field == field, options
    task = make("once", root=str(root), voxel_size=[0.25, 0.25, 8], max_frames=2)
    assert task.info.voxel_size == (0.25, 0.25, 8.0) and task.info.num_classes == 5 and task.info.point_dim == 4
    assert make("once", root=str(root)).info.point_range == (-75.2, -75.2, -5.0, 75.2, 75.2, 3.0)
    synthetic = make("once-synthetic", root=str(tmp_path))
    assert synthetic.info.point_range == (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    assert synthetic.info.voxel_size == (0.8, 0.8, 8.0)
    assert all(len(s.frames) == 2 for s in (task.load().train, task.load().val, task.load().test))


def test_the_fingerprint_follows_the_files(tmp_path):
    root = tiny_root(tmp_path)
    before = OnceTask(root=str(root)).fingerprint()
    _edit_json(root, "001000", lambda doc: doc["frames"][0]["annos"]["boxes_3d"][0].__setitem__(6, 0.5))
    assert OnceTask(root=str(root)).fingerprint() != before


def test_info_voxel_size_has_a_default_and_is_checked():
    assert Detection3DInfo(("car",), 4, (0, 0, 0, 1, 1, 1)).voxel_size == (0.2, 0.2, 8.0)
    with pytest.raises(ConfigError, match="voxel_size"):
        Detection3DInfo(("car",), 4, (0, 0, 0, 1, 1, 1), (0.2, -0.2, 8.0))


def test_the_metric_is_reexported():
    from automl.tasks import once_eval

    assert once_module.evaluate is once_eval.evaluate
