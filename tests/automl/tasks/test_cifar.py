"""The ``cifar10`` / ``cifar100`` tasks on tiny folders in CIFAR's python layout, written here: shapes,
splits, determinism, one ConfigError naming the file for every bad input, and hostile pickles refused."""
from __future__ import annotations

import os
import pickle
import signal
import struct
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from automl.errors import ConfigError
from automl.tasks.cifar import Cifar10Task, Cifar100Task
from automl.testing.tasks import TASK_CHECKS, make_task

PER_BATCH = 20  # CIFAR-10 test folders: 5 x 20 training images (10 per class) and 20 test images


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]  # the pure-Python pickler, to override a type
    """Writes bytes and text as Python 2 ``str`` (BINSTRING), and numpy's array reconstruction under its numpy 1
    name, as the CIFAR files (pickled by Python 2's cPickle) hold them."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def dump_py2(obj: Any, path: Path) -> None:
    """``obj`` pickled as Python 2 would have (protocol 2, str as bytes, ``numpy.core.multiarray``)."""
    import io

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))


def batch(n: int, classes: int, seed: int, key: str = "labels", **extra: Any) -> dict[bytes, Any]:
    """A batch dict of ``n`` random images with balanced labels (class ``i % classes``)."""
    rng = np.random.default_rng(seed)
    labels = [i % classes for i in range(n)]
    return {b"batch_label": b"batch " + str(seed).encode(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            key.encode(): labels, b"filenames": [f"img{seed}_{i}.png".encode() for i in range(n)], **extra}


def write_cifar10(parent: Path, dump: Callable[[Any, Path], None] = dump_py2) -> Path:
    """A tiny CIFAR-10 python folder under ``parent``; returns the folder."""
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        dump(batch(PER_BATCH, 10, seed=i), folder / f"data_batch_{i}")
    dump(batch(PER_BATCH, 10, seed=99), folder / "test_batch")
    dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": PER_BATCH},
         folder / "batches.meta")
    return folder


def cifar100_batch(n: int, seed: int) -> dict[bytes, Any]:
    fine = [i % 100 for i in range(n)]
    out = batch(n, 100, seed, key="fine_labels")
    out[b"coarse_labels"] = [f // 5 for f in fine]
    return out


def write_cifar100(parent: Path) -> Path:
    """A tiny CIFAR-100 python folder: 200 training images (2 per fine class), 100 test images."""
    folder = parent / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    dump_py2(cifar100_batch(200, seed=1), folder / "train")
    dump_py2(cifar100_batch(100, seed=2), folder / "test")
    dump_py2({b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20}, folder / "meta")
    return folder


def conformance_cases(tmp: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (quick options, options that change the data), for the task conformance suite; the folders
    are written only when ``tmp`` exists (collection calls this with a path that does not)."""
    root10, root100 = tmp / "c10", tmp / "c100"
    if tmp.exists():
        write_cifar10(root10)
        write_cifar100(root100)
    return {"cifar10": ({"root": str(root10)}, {"split_seed": 1}),
            "cifar100": ({"root": str(root100), "val_fraction": 0.5}, {"labels": "coarse"})}


# ------------------------------------------------------------------------------------------ the data


def test_cifar10_shapes_ranges_and_splits(tmp_path):
    folder = write_cifar10(tmp_path)
    task = Cifar10Task(root=str(folder))
    assert task.info.input_shape == (3, 32, 32) and task.info.num_classes == 10
    data = task.load()
    assert data.train_x.shape == (90, 3, 32, 32) and data.val_x.shape == (10, 3, 32, 32)
    assert data.test_x is not None and data.test_y is not None and data.test_x.shape == (20, 3, 32, 32)
    for x, y in ((data.train_x, data.train_y), (data.val_x, data.val_y), (data.test_x, data.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and len(x) == len(y)
    assert torch.bincount(data.val_y, minlength=10).tolist() == [1] * 10  # stratified: 10% of each class
    assert torch.bincount(data.train_y, minlength=10).tolist() == [9] * 10


def test_pixels_are_channels_first_rows_scaled_to_unit_range(tmp_path):
    folder = write_cifar10(tmp_path)
    raw = batch(PER_BATCH, 10, seed=99)[b"data"]
    test_x = Cifar10Task(root=str(folder)).load().test_x
    assert test_x is not None
    expected = torch.from_numpy(raw.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    assert torch.allclose(test_x, expected)
    assert torch.equal(test_x[0, 1, 0, :], expected[0, 1, 0, :])  # row 0 of the green plane: pixels 1024..1055


def test_root_may_be_the_folder_or_its_parent(tmp_path):
    folder = write_cifar10(tmp_path)
    a, b = Cifar10Task(root=str(folder)), Cifar10Task(root=str(tmp_path))
    assert a.root == b.root == folder.resolve()
    assert torch.equal(a.load().train_x, b.load().train_x)


def test_splits_are_deterministic_and_seeded(tmp_path):
    folder = write_cifar10(tmp_path)
    first, again = Cifar10Task(root=str(folder)).load(), Cifar10Task(root=str(folder)).load()
    assert torch.equal(first.val_x, again.val_x) and torch.equal(first.train_y, again.train_y)
    other = Cifar10Task(root=str(folder), split_seed=1).load()
    assert not torch.equal(first.val_x, other.val_x)
    assert torch.equal(first.test_x, other.test_x)  # the test batch never depends on the split


def test_limit_train_is_a_stratified_subset_that_leaves_validation_alone(tmp_path):
    folder = write_cifar10(tmp_path)
    full = Cifar10Task(root=str(folder)).load()
    small = Cifar10Task(root=str(folder), limit_train=30).load()
    assert small.train_x.shape[0] == 30 and torch.bincount(small.train_y).tolist() == [3] * 10
    assert torch.equal(small.val_x, full.val_x)
    rows = {r.numpy().tobytes() for r in full.train_x}
    assert all(r.numpy().tobytes() in rows for r in small.train_x)


def test_modern_pickles_are_read_too(tmp_path):
    """Batches re-pickled by Python 3 (str keys allowed; protocol 4 names numpy._core, protocol 5 _frombuffer)."""
    reference = Cifar10Task(root=str(write_cifar10(tmp_path / "py2"))).load()
    for protocol in (4, 5):
        def dump(obj: Any, path: Path, protocol: int = protocol) -> None:
            path.write_bytes(pickle.dumps(obj, protocol=protocol))

        data = Cifar10Task(root=str(write_cifar10(tmp_path / f"p{protocol}", dump))).load()
        assert torch.equal(data.train_x, reference.train_x) and torch.equal(data.test_y, reference.test_y)
    folder = write_cifar10(tmp_path / "str-keys")
    for name in ("data_batch_1", "test_batch"):
        doc = pickle.loads((folder / name).read_bytes(), encoding="bytes")  # our own file
        (folder / name).write_bytes(pickle.dumps({"data": doc[b"data"], "labels": doc[b"labels"]}, protocol=4))
    assert torch.equal(Cifar10Task(root=str(folder)).load().test_x, reference.test_x)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = write_cifar100(tmp_path)
    fine = Cifar100Task(root=str(tmp_path), val_fraction=0.5)
    assert fine.info.num_classes == 100 and fine.root == folder.resolve()
    data = fine.load()
    assert data.train_x.shape == (100, 3, 32, 32) and data.val_x.shape == (100, 3, 32, 32)
    assert data.test_x is not None and data.test_x.shape == (100, 3, 32, 32)
    assert torch.bincount(data.val_y, minlength=100).tolist() == [1] * 100
    coarse = Cifar100Task(root=str(folder), labels="coarse", val_fraction=0.5)
    assert coarse.info.num_classes == 20
    cdata = coarse.load()
    assert int(cdata.train_y.max()) == 19 and torch.bincount(cdata.val_y, minlength=20).tolist() == [5] * 20


def test_fingerprint_follows_the_files_contents_not_their_place(tmp_path):
    a = Cifar10Task(root=str(write_cifar10(tmp_path / "a")))
    b = Cifar10Task(root=str(write_cifar10(tmp_path / "b")))
    assert a.fingerprint() == b.fingerprint()
    dump_py2(batch(PER_BATCH, 10, seed=42), b.root / "data_batch_2")
    assert a.fingerprint() != Cifar10Task(root=str(b.root)).fingerprint()


@pytest.mark.parametrize("check", TASK_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tasks_pass_the_conformance_suite(tmp_path, name, check):
    options, changed = conformance_cases(tmp_path)[name]
    check(name, options, changed)


# ------------------------------------------------------------------------------------------ bad input


def only_error(make: Callable[[], Any]) -> str:
    """The one ConfigError that making the task, then loading it, raises (its text: one line)."""
    with pytest.raises(ConfigError) as caught:
        task = make()
        task.load()
    text = str(caught.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_missing_root_and_missing_folder(tmp_path):
    assert "option 'root'" in only_error(lambda: make_task("cifar10", {}))
    text = only_error(lambda: Cifar10Task(root=str(tmp_path / "nope")))
    assert f"{tmp_path / 'nope'}: no such folder" in text and text.startswith("root: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "neither a cifar-10-batches-py folder nor its parent" in only_error(lambda: Cifar10Task(root=str(empty)))


def test_a_missing_batch_file_is_named(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    text = only_error(lambda: Cifar10Task(root=str(tmp_path)))
    assert text == (f"root: {folder.resolve()}/data_batch_3: no such file (CIFAR-10 python layout needs "
                    "data_batch_1..5, test_batch)")
    folder100 = write_cifar100(tmp_path)
    (folder100 / "test").unlink()
    assert f"{folder100.resolve()}/test: no such file (CIFAR-100 python layout needs train, test)" in only_error(
        lambda: Cifar100Task(root=str(folder100)))


def good(n: int = PER_BATCH) -> dict[bytes, Any]:
    return batch(n, 10, seed=3)


BAD_BATCHES: dict[str, tuple[Any, str]] = {
    "not a dict": ([1, 2, 3], "expected a pickled dict with keys b'data' and b'labels', got a list"),
    "no data": ({b"labels": [0] * PER_BATCH}, "data: missing (a CIFAR batch holds b'data' and b'labels'"),
    "no labels": ({b"data": good()[b"data"], b"fine_labels": [0] * PER_BATCH}, "labels: missing"),
    "flat data": ({**good(), b"data": good()[b"data"].reshape(-1)}, "data: expected a uint8 array of shape (N, 3072)"),
    "float data": ({**good(), b"data": good()[b"data"].astype(np.float64)}, "got a float64 array of shape (20, 3072)"),
    "images data": ({**good(), b"data": good()[b"data"].reshape(-1, 3, 32, 32)}, "of shape (20, 3, 32, 32)"),
    "label range": ({**good(), b"labels": [10] + [0] * (PER_BATCH - 1)}, "labels: 1 label(s) outside 0..9, e.g. 10"),
    "negative label": ({**good(), b"labels": [-1] * PER_BATCH}, "labels: 20 label(s) outside 0..9"),
    "label count": ({**good(), b"labels": [0] * (PER_BATCH - 1)}, "labels: 19 labels for 20 images"),
    "text labels": ({**good(), b"labels": [b"cat"] * PER_BATCH}, "labels: expected a list of integer class ids"),
    "float labels": ({**good(), b"labels": np.zeros(PER_BATCH)}, "labels: expected a list of integer class ids, "
                                                                 "got a float64 array"),
    "empty": ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "data: the batch holds no images"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_a_bad_batch_is_one_error_naming_the_file_and_field(tmp_path, case):
    folder = write_cifar10(tmp_path)
    content, expected = BAD_BATCHES[case]
    dump_py2(content, folder / "data_batch_4")
    text = only_error(lambda: Cifar10Task(root=str(folder)))
    assert text.startswith(f"{folder.resolve() / 'data_batch_4'}: ") and expected in text, text


def test_a_bad_cifar100_label_names_its_key(tmp_path):
    folder = write_cifar100(tmp_path)
    doc = cifar100_batch(100, seed=2)
    doc[b"coarse_labels"] = [25] * 100
    dump_py2(doc, folder / "test")
    assert Cifar100Task(root=str(folder), val_fraction=0.5).load().test_x is not None  # fine labels are fine
    text = only_error(lambda: Cifar100Task(root=str(folder), labels="coarse", val_fraction=0.5))
    assert text.startswith(f"{folder.resolve() / 'test'}: coarse_labels: 100 label(s) outside 0..19")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_or_truncated_file_is_one_error(tmp_path, damage):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_2"
    whole = path.read_bytes()
    damaged = {"truncated": whole[: len(whole) // 2], "garbage": np.random.default_rng(0).bytes(512), "empty": b""}
    path.write_bytes(damaged[damage])
    text = only_error(lambda: Cifar10Task(root=str(folder)))
    assert text.startswith(f"{path.resolve()}: cannot read the pickle") and "corrupt or truncated" in text, text


@pytest.mark.parametrize("options, field", [
    ({"val_fraction": 0.0}, "val_fraction"), ({"val_fraction": 1.5}, "val_fraction"),
    ({"val_fraction": "a"}, "val_fraction"), ({"split_seed": -1}, "split_seed"), ({"split_seed": 1.5}, "split_seed"),
    ({"limit_train": 0}, "limit_train"), ({"limit_train": True}, "limit_train"), ({"root": 3}, "root"),
])
def test_bad_options_name_the_field(tmp_path, options, field):
    options = {"root": str(write_cifar10(tmp_path)), **options}
    with pytest.raises(ConfigError) as caught:
        make_task("cifar10", options)
    assert caught.value.field == field


def test_bad_labels_option(tmp_path):
    with pytest.raises(ConfigError, match="labels must be 'fine'") as caught:
        Cifar100Task(root=str(write_cifar100(tmp_path)), labels="medium")
    assert caught.value.field == "labels"


def test_splits_the_data_cannot_give_are_config_errors(tmp_path):
    folder = write_cifar10(tmp_path)
    text = only_error(lambda: Cifar10Task(root=str(folder), val_fraction=0.05))  # 5 images for 10 classes
    assert "val_fraction: cannot draw a stratified validation split" in text
    assert "limit_train: cannot draw a stratified subset of 5" in only_error(
        lambda: Cifar10Task(root=str(folder), limit_train=5))


# ------------------------------------------------------------------------------------------ hostile pickles


class _RunsCode:
    """Unpickling this calls ``call(*args)``: what a hostile file does to a plain pickle.load."""

    def __init__(self, call: Callable[..., Any], *args: Any) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.call, self.args)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("how", ["os.system", "eval", "nested"])
def test_a_hostile_pickle_is_refused_without_running(tmp_path, how, protocol):
    folder = write_cifar10(tmp_path / "data")
    marker = tmp_path / "ran"
    command = f"touch {marker}"
    payload: Any = {
        "os.system": _RunsCode(os.system, command),
        "eval": _RunsCode(eval, f"open({str(marker)!r}, 'w').close()"),
        "nested": {b"data": good()[b"data"], b"labels": [_RunsCode(os.system, command)] * PER_BATCH},
    }[how]
    (folder / "test_batch").write_bytes(pickle.dumps(payload, protocol=protocol))
    text = only_error(lambda: Cifar10Task(root=str(folder)))
    assert text.startswith(f"{folder.resolve() / 'test_batch'}: refused to unpickle: the file names ")
    assert "nothing was run" in text
    # a protocol-2 pickle of a numpy array written by Python 3 names _codecs.encode first (refused too)
    named = {"os.system": "system", "eval": "eval", "nested": "system" if protocol > 2 else "_codecs.encode"}
    assert named[how] in text
    assert not marker.exists()


def test_numpy_functions_other_than_array_reconstruction_are_refused(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_1").write_bytes(pickle.dumps(_RunsCode(np.load, str(folder / "x.npy")), protocol=4))
    assert "refused to unpickle: the file names numpy.load" in only_error(lambda: Cifar10Task(root=str(folder)))


# ------------------------------------------------------------------------------------------ the command line


SPACE = """
name: cifar-quick
task:
  name: cifar10
  options: {{root: {root}}}
builder: cnn
objectives: {{accuracy: max}}
space:
  model:
    blocks: [{{channels: 4, kernel: 3, batchnorm: true, pool: true}}]
  train: {{epochs: 1, batch_size: 32}}
"""


def search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: str
           ) -> tuple[int, str]:
    from automl.cli import main

    (tmp_path / "space.yaml").write_text(textwrap.dedent(SPACE.format(root=root)))
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        status = main(["search", "--space", "space.yaml", "--trials", "1"])
    finally:
        signal.signal(signal.SIGTERM, handler)
    return status, capsys.readouterr().err


def test_search_with_a_missing_root_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    status, err = search(tmp_path, monkeypatch, capsys, "data/cifar-10-batches-py")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: space.yaml:5: task.options.root: ")
    assert f"{tmp_path.resolve() / 'data' / 'cifar-10-batches-py'}: no such folder" in err
    assert not (tmp_path / "automl-runs").exists()


def test_search_with_a_missing_batch_file_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    folder = write_cifar10(tmp_path / "data")
    (folder / "data_batch_3").unlink()
    status, err = search(tmp_path, monkeypatch, capsys, "data")
    assert status == 2 and err.count("\n") == 1
    assert f"{folder.resolve()}/data_batch_3: no such file (CIFAR-10 python layout needs" in err
