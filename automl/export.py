"""Model export: from a search to a deployable model.

:func:`export` takes a study's best trial (or trial ``n``), rebuilds its trained model from what the
estimator kept in the study's checkpoint store and writes, into one folder:

- ``model.pt2``: a ``torch.export`` program with a dynamic batch dimension; it loads and runs with
  ``torch.export.load(path).module()(x)`` where only torch is installed (nothing of automl).
- ``model.onnx``: the ONNX graph (``torch.onnx.export``, the dynamo exporter; the TorchScript exporter
  when the dynamo one cannot take the model, which is said), checked at export time with onnxruntime:
  its outputs equal the PyTorch module's within :data:`ONNX_TOLERANCE` on the first
  :data:`CHECK_EXAMPLES` validation examples of the task, or the export fails.
- ``weights.pt``: the kept :class:`~automl.artifacts.TrainedModel` (weights + what rebuilds the module),
  read by :func:`load_model`, which returns the builder's own module class (or, when the builder cannot
  be imported, the ``model.pt2`` program's module).
- ``card.json`` and ``MODEL.md``: the model card (config, candidate key, metrics, costs, the task and its
  input, the training recipe and seed, versions, the files and what each holds).

Which module is exported, from which kept artifact, is an exporter's business: builders register one
in :data:`automl.registry.exporters` (entry points ``automl.exporters``) when the kept artifact is not a
``TrainedModel`` or when only a part of the model exports (detnas: the backbone + FPN; mmdet's box
decoding and NMS do not export). Every other builder goes through :func:`export_trained_model`.

torch is imported inside the functions: ``import automl`` stays light.
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import statistics
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, cast

from automl.artifacts import ArtifactStore, TrainedModel, trial_model_artifact
from automl.components import construct
from automl.errors import AutomlError, ConfigError, RegistryError
from automl.ledger import Ledger, Trial, comparable, open_storage, trial_losses
from automl.registry import exporters, resolve_builder
from automl.strategies.base import TrialState
from automl.strategies.pareto import pareto_front

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.space.model import SearchSpace
    from automl.study import Study
    from automl.tasks.base import Task

__all__ = [
    "CHECK_EXAMPLES", "FORMATS", "ONNX_TOLERANCE", "ExportError", "ExportRequest", "ExportResult", "ExportSource",
    "describe_input", "export", "export_trained_model", "load_model", "task_inputs",
]

logger = logging.getLogger(__name__)

#: the formats :func:`export` writes, and the file each goes to
FORMATS: Mapping[str, str] = {"pt2": "model.pt2", "onnx": "model.onnx"}
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "card.json"
MARKDOWN_FILE = "MODEL.md"
#: bump when card.json's layout changes
CARD_FORMAT = 1
#: validation examples the exported programs are checked on (the first ones of the split)
CHECK_EXAMPLES = 16
#: largest absolute difference allowed between the PyTorch module's outputs and an exported program's
ONNX_TOLERANCE = 1e-4
#: batch-1 forward passes whose median is the card's latency (after two warm-up runs)
LATENCY_REPEATS = 20


class ExportError(AutomlError):
    """A model that does not export, or an exported program whose outputs differ from the module's."""


@dataclass(frozen=True)
class ExportRequest:
    """What an exporter is given: the trial to export, the study's checkpoint store (where the trial's
    estimator kept its model), the study's space when it can be rebuilt (None otherwise), the study's
    seed, and how many validation examples to return (:attr:`ExportSource.inputs`)."""

    study: str
    trial: Trial
    store: ArtifactStore
    space: SearchSpace | None
    study_seed: int | None
    examples: int = CHECK_EXAMPLES

    def read_kept(self, name: str, why: str) -> bytes:
        """The bytes of the kept model ``name`` in the store; its absence is :meth:`missing` (``why``)."""
        if not self.store.exists(name):
            raise self.missing(name, why)
        return self.store.read_bytes(name)

    def missing(self, name: str, why: str) -> ConfigError:
        """The error for a trial whose kept model (``name`` in the store) is not there."""
        return ConfigError(
            f"trial {self.trial.number} of study {self.study!r} has no kept model ({name} is not in the checkpoint "
            f"store {self.store.root}): {why}. Export a trial whose model was kept, or rerun the search with a "
            "checkpoint store (create_study(..., checkpoints=DIR); automl search keeps models under "
            "automl-runs/STUDY/checkpoints) and an estimator that keeps models (train, supernet, biws, "
            "train-from-scratch, detnas)")


@dataclass(frozen=True)
class ExportSource:
    """What an exporter makes of a trial's kept artifact: the module to export (weights loaded), a batch
    of the task's validation inputs (at most :attr:`ExportRequest.examples`, the example of the export and
    the data its check runs on), what the input and outputs are (for the card), the loadable weights
    (written into the export folder as ``weights_file``) and how the model was built and trained.

    ``loader`` (``"package.module:function"``, called with the weights file's path) rebuilds the exported
    module in :func:`load_model`; None: the weights file is a :class:`TrainedModel`, rebuilt with its
    builder. ``note`` says, in one line, what the export leaves out; ``task_resolved`` is every option of
    the task as built (its defaults included), for the card."""

    module: nn.Module
    inputs: torch.Tensor
    input: Mapping[str, Any]
    output: str
    weights_file: str
    weights: bytes
    builder: str
    config: Mapping[str, Any]
    task: str
    task_options: Mapping[str, Any]
    family: str
    training: Mapping[str, Any]
    weights_holds: str = "the kept TrainedModel: weights, builder, config, task, recipe (automl.load_model)"
    loader: str | None = None
    note: str | None = None
    task_resolved: Mapping[str, Any] = field(default_factory=dict)  # every option of the task, defaults included


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: the folder, the trial, each file by role (``pt2``, ``onnx``, ``weights``,
    ``card``, ``markdown``), the model card, the notes it gave, and the largest output differences the
    checks measured (None for a format not written)."""

    out_dir: Path
    study: str
    trial: int
    files: Mapping[str, Path]
    card: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    pt2_max_abs_diff: float | None = None
    onnx_max_abs_diff: float | None = None
    onnx_exporter: str | None = None

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(f for f in FORMATS if f in self.files)


# ----------------------------------------------------------------------------------------------------
# export


def export(study: Study | tuple[str, str | None], out_dir: str | Path,
           formats: Sequence[str] | str | None = ("pt2", "onnx"), trial: int | None = None, *,
           summary: Mapping[str, tuple[float, float]] | None = None, examples: int = CHECK_EXAMPLES,
           on_note: Callable[[str], None] | None = None) -> ExportResult:
    """Export the best trial of ``study`` (a :class:`~automl.study.Study`, or ``(study_name, storage
    URL)``), or its trial number ``trial``, into ``out_dir``: the ``formats`` (of :data:`FORMATS`; None:
    all of them), the weights, ``card.json`` and ``MODEL.md``. ``summary`` (metric -> (mean, std) over
    seeds, when the caller measured them) goes into the card. ``on_note`` receives each one-line note
    (what an export leaves out, an exporter fallback); default: logged as a warning of ``automl.export``.

    Bad input (an unknown format, a study without a finished trial, an unknown trial, a model that was
    not kept) is one :class:`ConfigError`; a model that does not export, or an ONNX graph whose outputs
    differ from the module's by more than :data:`ONNX_TOLERANCE`, an :class:`ExportError`."""
    chosen_formats = check_formats(formats)
    if examples < 1:
        raise ConfigError(f"examples must be >= 1, got {examples}")
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        (on_note or logger.warning)(text)

    name, ledger, store, space, study_seed = _open(study)
    chosen = _choose(name, ledger, trial)
    if store is None:
        raise ConfigError(f"study {name!r} has no checkpoint store, so no trained model was kept: rerun the search "
                          "with one (create_study(..., checkpoints=DIR); automl search keeps models under "
                          "automl-runs/STUDY/checkpoints)")
    request = ExportRequest(study=name, trial=chosen, store=store, space=space, study_seed=study_seed,
                            examples=examples)
    builder = _builder(request)
    try:
        exporter = exporters.find(builder) if builder is not None else None
    except ImportError as exc:  # a plug-in's exporter whose own dependencies are missing
        raise ConfigError(f"the exporter of builder {builder!r} cannot be imported: {exc}") from None
    make = cast("Callable[[ExportRequest], ExportSource]", exporter) if exporter is not None else export_trained_model
    source = make(request)
    if source.note:
        note(source.note)

    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder")
    # everything is written and checked in a staging folder beside ``root`` and only then moved in, so a
    # failed export leaves ``root`` as it was
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.export-") as staging:
            staged, card, diffs, exporter_used = _write(Path(staging), source, chosen, chosen_formats, summary,
                                                        examples, note, notes, name, study_seed, ledger, space)
            root.mkdir(exist_ok=True)
            _remove_earlier_export(root)
            written = {}
            for role, path in staged.items():
                written[role] = root / path.name
                path.replace(written[role])
    except OSError as exc:  # an unwritable folder, a full disk: say where
        raise ConfigError(f"cannot write the export to {root}: {exc.strerror or exc}") from None
    return ExportResult(out_dir=root, study=name, trial=chosen.number, files=written, card=card, notes=tuple(notes),
                        pt2_max_abs_diff=diffs.get("pt2"), onnx_max_abs_diff=diffs.get("onnx"),
                        onnx_exporter=exporter_used)


def _write(stage: Path, source: ExportSource, chosen: Trial, formats: Sequence[str],
           summary: Mapping[str, tuple[float, float]] | None, examples: int, note: Callable[[str], None],
           notes: Sequence[str], name: str, study_seed: int | None, ledger: Ledger, space: SearchSpace | None
           ) -> tuple[dict[str, Path], dict[str, Any], dict[str, float], str | None]:
    """Write and check the export's files in ``stage``: (files by role, card, max differences by format,
    the ONNX exporter used)."""
    import torch

    written: dict[str, Path] = {"weights": stage / source.weights_file}
    written["weights"].write_bytes(source.weights)
    module = source.module.cpu().eval()
    inputs = source.inputs[:examples].cpu()
    batches = [inputs] + ([inputs[:1]] if len(inputs) > 1 else [])
    with torch.no_grad():
        expected = [_flat(module(batch)) for batch in batches]
    program, export_failure = _torch_export(module, inputs)
    diffs: dict[str, float] = {}
    onnx_info: dict[str, Any] = {}
    if "pt2" in formats:
        if program is None:
            raise ExportError(f"trial {chosen.number} (builder {source.builder!r}): torch.export could not export the "
                              f"model with a dynamic batch dimension ({export_failure}); export only onnx "
                              f"(formats=('onnx',)), or register an exporter for {source.builder!r} "
                              "(automl.exporters) that exports a part of it")
        path = stage / FORMATS["pt2"]
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path)).module()
        with torch.no_grad():
            diffs["pt2"] = _max_diff(expected, [_flat(loaded(batch)) for batch in batches])
        if not diffs["pt2"] <= ONNX_TOLERANCE:
            raise ExportError(f"trial {chosen.number}: the torch.export program's outputs differ from the module's by "
                              f"{diffs['pt2']:.3g} (> {ONNX_TOLERANCE:g}) on {len(inputs)} validation examples")
        written["pt2"] = path
    if "onnx" in formats:
        path = stage / FORMATS["onnx"]
        onnx_info = _onnx_export(module, inputs, len(expected[0]), path, export_failure, note)
        diffs["onnx"] = onnx_info["max_abs_diff"] = _onnx_check(path, batches, expected)
        if not diffs["onnx"] <= ONNX_TOLERANCE:
            raise ExportError(f"trial {chosen.number}: the ONNX graph's outputs (onnxruntime) differ from the PyTorch "
                              f"module's by {diffs['onnx']:.3g} (> {ONNX_TOLERANCE:g}) on the first {len(inputs)} "
                              f"validation examples ({onnx_info['exporter']} exporter); nothing was written")
        written["onnx"] = path

    costs = model_costs(module, inputs[:1])
    card = _card(name, chosen, source, costs, written, summary, len(inputs), diffs.get("pt2"), onnx_info, notes,
                 study_seed, ledger, space.name if space is not None else ledger.study_attrs().get("space_name"))
    written["card"] = stage / CARD_FILE
    written["card"].write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    written["markdown"] = stage / MARKDOWN_FILE
    written["markdown"].write_text(model_markdown(card))
    return written, card, diffs, onnx_info.get("exporter")


def _remove_earlier_export(root: Path) -> None:
    """Remove the files an earlier export wrote into ``root`` (those its card lists), so that a format not
    exported now does not linger beside the new card."""
    try:
        listed = json.loads((root / CARD_FILE).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return
    for file in listed if isinstance(listed, dict) else ():
        path = root / str(file)
        if path.parent == root and path.is_file():
            path.unlink()


def check_formats(formats: Sequence[str] | str | None) -> tuple[str, ...]:
    """``formats`` (names, or one comma-separated string; None: all) checked against :data:`FORMATS`."""
    if formats is None:
        return tuple(FORMATS)
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"no export format given; supported: {', '.join(FORMATS)}")
    for n in names:
        if n not in FORMATS:
            raise ConfigError(f"unknown export format {n!r}; supported: {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------------------
# which study, which trial, which builder


def _open(study: Study | tuple[str, str | None]
          ) -> tuple[str, Ledger, ArtifactStore | None, SearchSpace | None, int | None]:
    """(name, ledger, checkpoint store, space, seed) of a Study or of ``(study_name, storage URL)``."""
    if isinstance(study, (tuple, list)):
        if len(study) != 2 or not isinstance(study[0], str):
            raise ConfigError(f"expected a Study or (study_name, storage URL), got {study!r}")
        ledger = Ledger.load(open_storage(study[1]), study[0])
        attrs = ledger.study_attrs()
        root = attrs.get("checkpoints")
        seed = attrs.get("seed")
        return (ledger.study_name, ledger, ArtifactStore(str(root)) if root else None, _study_space(attrs),
                int(seed) if seed is not None else None)
    if not hasattr(study, "ledger"):
        raise ConfigError(f"expected a Study or (study_name, storage URL), got {study!r}")
    ledger = study.ledger
    store = study.checkpoints
    if store is None:
        root = ledger.study_attrs().get("checkpoints")
        store = ArtifactStore(str(root)) if root else None
    return ledger.study_name, ledger, store, study.space, study.seed


def _study_space(attrs: Mapping[str, Any]) -> SearchSpace | None:
    """The study's space, rebuilt from the document it recorded (or, for studies that predate that record,
    from its source file or registered name), when it is still the one the study was created from (same
    fingerprint); None otherwise."""
    from automl.space import load_space
    from automl.space.fixing import space_from_document

    recorded = attrs.get("space_document")
    if recorded:
        try:
            space = space_from_document(recorded["document"], recorded.get("source"))
        except AutomlError:
            space = None
        if space is not None and space.fingerprint == attrs.get("space_fingerprint"):
            return space
    source, name = attrs.get("space_source"), attrs.get("space_name")
    candidates = [source] if source and Path(str(source)).is_file() else []
    candidates += [name] if name else []
    for ref in candidates:
        try:
            space = load_space(str(ref))
        except (AutomlError, OSError):
            continue
        if space.fingerprint == attrs.get("space_fingerprint"):
            return space
    return None


def _choose(name: str, ledger: Ledger, number: int | None) -> Trial:
    trials = ledger.trials()
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    if number is not None:
        found = [t for t in trials if t.number == number]
        if not found:
            span = f"its trials are numbered 0..{max(t.number for t in trials)}" if trials else "it has no trials"
            raise ConfigError(f"study {name!r} has no trial {number} ({span})")
        picked = found[0]
        if picked.state is not TrialState.COMPLETE:
            why = f": {picked.error}" if picked.error else ""
            others = ", ".join(str(t.number) for t in done[:10]) or "none"
            raise ConfigError(f"trial {number} of study {name!r} is {picked.state.value}{why}; only a finished trial "
                              f"has a trained model to export (finished trials: {others})")
        return picked
    if not done:
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.value] = states.get(t.state.value, 0) + 1
        held = ", ".join(f"{n} {s}" for s, n in states.items()) or "no trials"
        raise ConfigError(f"study {name!r} has no finished trial to export ({held}); run or resume its search "
                          "first (automl search)")
    return _best(ledger, done)


def _best(ledger: Ledger, done: list[Trial]) -> Trial:
    """The study's best trial, as :attr:`automl.study.Study.best` picks it."""
    pool = comparable(done) or done
    losses = [trial_losses(ledger.objectives, t) for t in pool]
    front = [pool[i] for i in pareto_front(losses)]
    return sorted(front, key=lambda t: (trial_losses(ledger.objectives, t), t.number))[0]


def _builder(request: ExportRequest) -> str | None:
    """The builder of the study's space, else the one the kept TrainedModel names (None: neither known)."""
    if request.space is not None and request.space.builder:
        return request.space.builder
    name = trial_model_artifact(request.trial.number)
    if request.store.exists(name):
        return read_trained_model(request.store.read_bytes(name), name).builder
    return None


# ----------------------------------------------------------------------------------------------------
# the default exporter: a TrainedModel rebuilt with its builder


def read_trained_model(data: bytes, source: str) -> TrainedModel:
    """A kept model (its tensors on the CPU: a model trained on a GPU exports on a machine without one)."""
    return TrainedModel.from_bytes(data, source)


def build_task(name: str, options: Mapping[str, Any]) -> Task:
    """A registered task built from its options."""
    from automl.tasks.base import tasks

    return construct(tasks.get(name), dict(options), kind="task", name=name)


def rebuild(saved: TrainedModel) -> nn.Module:
    """The module of a kept TrainedModel: its builder's module with the weights loaded, in eval mode."""
    from automl.training.seeding import seeded

    task = build_task(saved.task, saved.task_options)
    with seeded(0):  # the initialisation is overwritten; seeded keeps the caller's RNG untouched
        module = resolve_builder(saved.builder)(saved.config.get("model", saved.config), task.info)
    try:
        module.load_state_dict(dict(saved.state_dict))
    except RuntimeError as exc:
        raise ConfigError(f"the kept weights do not fit the module builder {saved.builder!r} makes of the trial's "
                          f"config: {str(exc).splitlines()[0]}") from None
    return module.eval()


def export_trained_model(request: ExportRequest) -> ExportSource:
    """The exporter of every builder without one of its own: the trial's kept TrainedModel
    (``trial-<n>.model.pt``, :meth:`automl.estimator.EvalContext.keep_model`), rebuilt with its builder;
    the check runs on the task's validation inputs."""
    name = trial_model_artifact(request.trial.number)
    data = request.read_kept(name, "its estimator did not keep it (train, supernet, biws and train-from-scratch "
                                   "keep every trial's model; an objective function keeps none)")
    saved = read_trained_model(data, name)
    if saved.trial != request.trial.number or _canonical(saved.config) != _canonical(request.trial.config):
        raise ConfigError(f"{name} in the checkpoint store {request.store.root} is not trial {request.trial.number} "
                          f"of study {request.study!r} (it holds trial {saved.trial} of space {saved.space!r} with "
                          "another config): another study wrote into the same checkpoint store; give each its own")
    task = build_task(saved.task, saved.task_options)
    module = rebuild(saved)
    full = task_inputs(task)
    training: dict[str, Any] = {"estimator": saved.estimator, "recipe": saved.recipe, "seed": saved.seed,
                "study_seed": request.study_seed, "budget": request.trial.budget}
    if request.space is not None:
        training["estimator_options"] = dict(request.space.estimator_options)
        training["regimes"] = [{"name": n, "options": dict(o)} for n, o in request.space.regimes]
    return ExportSource(module=module, inputs=full[:request.examples], input=describe_input(task, full),
                        output=describe_output(task), weights_file=WEIGHTS_FILE, weights=data, builder=saved.builder,
                        config=dict(saved.config), task=saved.task, task_options=dict(saved.task_options),
                        family=task.family, training=training, task_resolved=task.options())


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def task_inputs(task: Task) -> torch.Tensor:
    """The inputs of a task's validation split (supervised, text and environments families; an
    environments task without validation environments: its training environments' inputs)."""
    from automl.tasks.environments import EnvironmentsTask
    from automl.tasks.supervised import ClassificationTask
    from automl.tasks.text import TextTask

    if isinstance(task, ClassificationTask):
        return task.load().val_x
    if isinstance(task, TextTask):
        return task.load().val_ids
    if isinstance(task, EnvironmentsTask):
        envs = task.load()
        return envs.pooled("val" if envs.val else "train")[0]
    raise ConfigError(f"task {type(task).__name__} ({task.family}): the default exporter reads validation inputs of "
                      "supervised, text and environments tasks only; register an exporter for the builder "
                      "(automl.exporters)")


def describe_input(task: Task, inputs: torch.Tensor) -> dict[str, Any]:
    """The card's description of a model's input: dtype, shape (``N`` the batch) and what the values are,
    from the task's info and the validation ``inputs``."""
    from automl.tasks.text import TextTaskInfo

    info = task.info
    dtype = str(inputs.dtype).removeprefix("torch.")
    shape: list[Any] = ["N", *(int(s) for s in inputs.shape[1:])]
    dims = ", ".join(str(s) for s in shape)
    out: dict[str, Any] = {"name": "input", "dtype": dtype, "shape": shape}
    if isinstance(info, TextTaskInfo):
        out["description"] = (
            f"{dtype} token ids [{dims}]: [CLS] tokens [SEP], padded with [PAD] to {info.max_len} (pad_id "
            f"{info.pad_id}, cls_id {info.cls_id}, sep_id {info.sep_id}, mask_id {info.mask_id}, vocabulary of "
            f"{info.vocab_size} ids); the model's attention mask is ids != pad_id")
        out.update(vocab_size=info.vocab_size, max_len=info.max_len, pad_id=info.pad_id, cls_id=info.cls_id,
                   sep_id=info.sep_id, mask_id=info.mask_id)
        return out
    low, high = float(inputs.min()), float(inputs.max())
    what = ""
    if type(task).__module__.startswith("automl.tasks.digits"):
        what = "grey images of handwritten digits from sklearn's digits, pixel intensity / 16 (0 background, 1 ink); "
    out["description"] = f"{dtype} [{dims}]: {what}values {low:.4g}..{high:.4g} on the validation split"
    out["range"] = [low, high]
    return out


def describe_output(task: Task) -> str:
    """The card's description of a classifier's output."""
    num_classes = getattr(task.info, "num_classes", None)
    return (f"float32 [N, {num_classes}] class logits (argmax: the predicted class index; softmax: the class "
            "probabilities)")


# ----------------------------------------------------------------------------------------------------
# the exports and their checks


def _flat(outputs: Any) -> list[torch.Tensor]:
    """A module's outputs (a tensor, or a nest of them) as a flat list of tensors."""
    import torch
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(outputs)
    return [leaf.detach().float() for leaf in leaves if isinstance(leaf, torch.Tensor)]


def _max_diff(expected: Sequence[Sequence[torch.Tensor]], got: Sequence[Sequence[Any]]) -> float:
    """The largest absolute difference between two lists of outputs per batch (inf on a shape mismatch)."""
    import numpy as np

    worst = 0.0
    for want, have in zip(expected, got):
        if len(want) != len(have):
            return math.inf
        for a, b in zip(want, have):
            b_np = b.detach().float().numpy() if hasattr(b, "detach") else np.asarray(b, dtype=np.float32)
            a_np = a.numpy()
            if a_np.shape != b_np.shape:
                return math.inf
            if a_np.size:
                worst = max(worst, float(np.nan_to_num(np.abs(a_np - b_np), nan=math.inf).max()))
    return worst


def _dynamic_batch() -> tuple[dict[int, Any]]:
    import torch

    return ({0: torch.export.Dim("batch")},)


def _torch_export(module: nn.Module, inputs: torch.Tensor) -> tuple[Any, str]:
    """``torch.export.export`` with a dynamic batch dimension; (program, "") or (None, why it failed)."""
    import torch

    try:
        return torch.export.export(module, (inputs,), dynamic_shapes=_dynamic_batch()), ""
    except Exception as exc:  # torch.export raises many types (UserError, Unsupported, ...): say which
        return None, f"{type(exc).__name__}: {_first_line(exc)}"


def _onnx_export(module: nn.Module, inputs: torch.Tensor, n_outputs: int, path: Path, export_failure: str,
                 note: Callable[[str], None]) -> dict[str, Any]:
    """Write ``path`` with the dynamo exporter, or the TorchScript one when the dynamo one fails (a note
    says so); returns what the card records."""
    import torch

    outputs = ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]
    why = export_failure
    if not export_failure:  # the dynamo exporter runs torch.export too: no use trying it when that failed
        try:
            torch.onnx.export(module, (inputs,), str(path), dynamo=True, dynamic_shapes=_dynamic_batch(),
                              input_names=["input"], output_names=outputs, external_data=False, verbose=False)
            return {"exporter": "dynamo", "input": "input", "outputs": outputs, "opset": _opset(path)}
        except Exception as exc:  # the exporter raises many types: fall back, and say why
            why = f"{type(exc).__name__}: {_first_line(exc)}"
    note(f"onnx: the dynamo exporter could not take the model ({why}); used the TorchScript exporter instead")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation warnings
            torch.onnx.export(module, (inputs,), str(path), dynamo=False, input_names=["input"], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]})
    except Exception as exc:
        raise ExportError(f"neither ONNX exporter could take the model (dynamo: {why}; TorchScript: "
                          f"{type(exc).__name__}: {_first_line(exc)})") from None
    return {"exporter": "torchscript", "input": "input", "outputs": outputs, "opset": _opset(path),
            "dynamo_failure": why}


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return int(versions[0]) if versions else None


def _onnx_check(path: Path, batches: Sequence[torch.Tensor], expected: Sequence[Sequence[torch.Tensor]]) -> float:
    """The largest difference between onnxruntime's outputs and the module's on each batch."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        got = [session.run(None, {name: batch.numpy()}) for batch in batches]
    except Exception as exc:  # onnxruntime's errors (InvalidGraph, Fail, ...) share no base class
        raise ExportError(f"onnxruntime cannot run the exported ONNX graph: {type(exc).__name__}: "
                          f"{_first_line(exc)}") from None
    return _max_diff(expected, got)


def model_costs(module: nn.Module, example: torch.Tensor, repeats: int = LATENCY_REPEATS) -> dict[str, Any]:
    """Parameters, FLOPs of one batch-1 forward pass (``torch.utils.flop_counter``) and the median CPU
    latency of ``repeats`` batch-1 passes (ms), with the torch threads it was measured with."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            module(example)
        times = []
        for i in range(repeats + 2):
            start = time.perf_counter()
            module(example)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1000.0)
    return {"params": int(params), "flops": int(counter.get_total_flops()), "latency_ms": statistics.median(times),
            "latency": f"median of {repeats} batch-1 forward passes of the exported module (in PyTorch) on the "
                       f"exporting machine's CPU ({torch.get_num_threads()} torch threads)"}


# ----------------------------------------------------------------------------------------------------
# the model card


def _card(study: str, trial: Trial, source: ExportSource, costs: Mapping[str, Any], written: Mapping[str, Path],
          summary: Mapping[str, tuple[float, float]] | None, examples: int, pt2_diff: float | None,
          onnx_info: Mapping[str, Any], notes: Sequence[str], study_seed: int | None, ledger: Ledger,
          space_name: str | None) -> dict[str, Any]:
    import importlib

    import torch

    # the package's version: the package is loaded before any of its modules, so this only reads it (a
    # plain ``import automl`` would count as a dependency on everything its __init__ imports)
    version = str(importlib.import_module("automl").__version__)
    files: dict[str, str] = {}
    if "pt2" in written:
        files[FORMATS["pt2"]] = ("torch.export program (ExportedProgram) of the module, dynamic batch dimension; "
                                 "torch.export.load(path).module()(x) runs it with only torch installed")
    if "onnx" in written:
        files[FORMATS["onnx"]] = (f"ONNX graph ({onnx_info.get('exporter')} exporter, opset {onnx_info.get('opset')}), "
                                  f"dynamic batch dimension; input {onnx_info.get('input')!r}, outputs "
                                  f"{', '.join(onnx_info.get('outputs', []))}; checked with onnxruntime")
    files[source.weights_file] = source.weights_holds
    files[CARD_FILE] = "this card, as JSON"
    files[MARKDOWN_FILE] = "this card, for people"
    checks: dict[str, Any] = {"examples": examples, "tolerance": ONNX_TOLERANCE,
                              "batches": [examples, 1] if examples > 1 else [1]}
    if pt2_diff is not None:
        checks["pt2_max_abs_diff"] = pt2_diff
    if "max_abs_diff" in onnx_info:
        checks["onnx_max_abs_diff"] = onnx_info["max_abs_diff"]
    metrics = {k: v for k, v in trial.metrics.items() if isinstance(v, (int, float))}
    card: dict[str, Any] = {
        "card_format": CARD_FORMAT,
        "study": study,
        "trial": trial.number,
        "space": space_name,
        "builder": source.builder,
        "config": dict(source.config),
        "key": trial.key,
        "objectives": {o.name: {"direction": o.direction, "value": (trial.values or {}).get(o.name)}
                       for o in ledger.objectives},
        "metrics": metrics,
        "summary": ({k: {"mean": float(m), "std": float(s)} for k, (m, s) in summary.items()} if summary else None),
        "cost": dict(costs),
        "task": {"name": source.task, "options": dict(source.task_options),
                 "resolved_options": dict(source.task_resolved), "family": source.family},
        "input": dict(source.input),
        "output": source.output,
        "training": dict(source.training),
        "seed": source.training.get("seed"),
        "study_seed": study_seed,
        "formats": [f for f in FORMATS if f in written],
        "onnx": {k: v for k, v in onnx_info.items()} if onnx_info else None,
        "checks": checks,
        "files": files,
        "weights": {"file": source.weights_file, "loader": source.loader},
        "notes": list(notes),
        "automl_version": version,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return card


def git_commit() -> str:
    """The commit of the checkout automl runs from (``+dirty`` with uncommitted changes to tracked files),
    or ``"unknown"`` (no git, or automl installed outside a checkout)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if not (top / "automl" / "__init__.py").resolve().samefile(here / "__init__.py"):
            return "unknown"
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def model_markdown(card: Mapping[str, Any]) -> str:
    """MODEL.md: the card for people, with how to load each file."""
    lines = [f"# {card['study']}: trial {card['trial']}", ""]
    task = card["task"]
    options = json.dumps(task["options"], sort_keys=True) if task["options"] else "default options"
    lines += [f"Space `{card['space']}`, builder `{card['builder']}`, task `{task['name']}` ({task['family']}, "
              f"{options}). Exported {card['exported_at']} by automl {card['automl_version']} (commit "
              f"{card['git_commit']}), torch {card['torch_version']}.", ""]
    for text in card["notes"]:
        lines += [f"> **Note:** {text}", ""]
    lines += ["## Scores", "", "| metric | value |", "|---|---|"]
    summary = card.get("summary") or {}
    for name, spec in card["objectives"].items():
        if name in summary:
            shown = f"{summary[name]['mean']:.4g} ± {summary[name]['std']:.4g} over seeds"
        else:
            shown = _fmt(spec["value"])
        lines.append(f"| **{name}** ({spec['direction']}) | {shown} |")
    for name, spec in summary.items():
        if name not in card["objectives"]:
            lines.append(f"| {name} | {spec['mean']:.4g} ± {spec['std']:.4g} over seeds |")
    for name, value in card["metrics"].items():
        if name not in card["objectives"] and name not in summary:
            lines.append(f"| {name} | {_fmt(value)} |")
    cost = card["cost"]
    lines += ["", "## Model", "", f"- candidate key `{card['key']}`",
              f"- {cost['params']:,} parameters, {cost['flops']:,} FLOPs per example, "
              f"{cost['latency_ms']:.3g} ms latency ({cost['latency']})", "", "```json",
              json.dumps(card["config"], indent=2), "```", "",
              "## Input and output", "", f"- input `{card['input']['name']}`: {card['input']['description']}",
              f"- output: {card['output']}", "", "## Training", ""]
    training = card["training"]
    lines.append(f"- estimator `{training.get('estimator')}`, seed {card['seed']} (study seed {card['study_seed']})")
    for key, value in training.items():
        if key not in ("estimator", "seed", "study_seed") and value not in (None, [], {}):
            lines.append(f"- {key}: `{json.dumps(value, default=str)}`")
    lines += ["", "## Files", "", "| file | what it holds |", "|---|---|"]
    lines += [f"| `{name}` | {what} |" for name, what in card["files"].items()]
    checks = card["checks"]
    measured = ", ".join(f"{k.removesuffix('_max_abs_diff')} {v:.2g}" for k, v in checks.items()
                         if k.endswith("_max_abs_diff"))
    if measured:
        lines += ["", f"Checked at export on the first {checks['examples']} validation examples (and on a batch of "
                  f"one): largest |difference| from the PyTorch module's outputs: {measured} (allowed "
                  f"{checks['tolerance']:g})."]
    lines += ["", "## How to load", ""]
    if "pt2" in card["formats"]:
        lines += ["With torch alone (nothing of automl installed):", "", "```python", "import torch", "",
                  f"model = torch.export.load(\"{FORMATS['pt2']}\").module()",
                  f"outputs = model(x)  # x: {card['input']['dtype']} {_shape(card['input']['shape'])}, any batch size",
                  "```", ""]
    if "onnx" in card["formats"]:
        onnx_info = card["onnx"]
        lines += ["With onnxruntime:", "", "```python", "import onnxruntime", "",
                  f"session = onnxruntime.InferenceSession(\"{FORMATS['onnx']}\")",
                  f"outputs = session.run(None, {{\"{onnx_info['input']}\": x}})  # x: a numpy "
                  f"{card['input']['dtype']} array {_shape(card['input']['shape'])}", "```", ""]
    lines += ["With automl (the builder's own module class, weights loaded, eval mode):", "", "```python",
              "import automl", "", "model = automl.load_model(\"path/to/this/folder\")", "```", ""]
    return "\n".join(lines)


def _shape(shape: Iterable[Any]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ----------------------------------------------------------------------------------------------------
# loading


def load_model(path: str | Path) -> nn.Module:
    """The model of an export folder, weights loaded, in eval mode: the builder's own module class (or
    what the exporter's loader makes); when the builder (or its task) cannot be imported, the
    ``model.pt2`` program's module, which needs only torch."""
    import torch

    root = Path(path)
    card_path = root / CARD_FILE
    if not card_path.is_file():
        raise ConfigError(f"{root}: not an export folder (no {CARD_FILE}); write one with automl export")
    try:
        card = json.loads(card_path.read_text())
        weights = card.get("weights") or {}
        file = root / str(weights.get("file", WEIGHTS_FILE))
        loader = weights.get("loader")
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{card_path}: not a model card ({exc})") from None
    try:
        if loader:
            module = _import(str(loader))(file)
        else:
            if not file.is_file():
                raise ConfigError(f"{file}: no such file (the export's weights)")
            module = rebuild(read_trained_model(file.read_bytes(), str(file)))
    except (RegistryError, ImportError) as exc:
        program = root / FORMATS["pt2"]
        if not program.is_file():
            raise ConfigError(f"{root}: the model's builder cannot be imported ({exc}) and there is no "
                              f"{FORMATS['pt2']} to fall back on; install the package that provides builder "
                              f"{card.get('builder')!r}") from None
        logger.warning("builder %r cannot be imported (%s): loaded the torch.export program's module of %s instead",
                       card.get("builder"), exc, program)
        module = torch.export.load(str(program)).module()
        for sub in module.modules():  # exported in eval mode; an exported module refuses .eval() itself
            sub.training = False
        return module
    return module.eval()


def _import(ref: str) -> Callable[[Path], nn.Module]:
    import importlib

    module_name, _, attr = ref.partition(":")
    found: Callable[[Path], nn.Module] = getattr(importlib.import_module(module_name), attr)
    return found

