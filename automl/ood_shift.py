"""OoD-Bench's recipe on a multi-environment task (PAPERS.md §10): the diversity and correlation shift of
the test environments (Q) against the training environments (P), as ``m-Just/OoD-Bench``
(``ood_bench/scripts/main.py``, ``train.py``, ``extract.py``, ``quantify.py``, ``utils.py``,
``networks.py``) measures them, one trial per seed:

1. **Label shift removed** (``utils.create_label_shift_free_datasets``): P is the task's ``train``
   environments pooled, Q its ``test`` ones; every class of P keeps min(count in P, count in Q) examples on
   both sides (:func:`automl.ood.shift.balanced_indices`, the reference's ``RandomState`` draws).
2. **Held out** (``utils.split_dataset``): ``holdout_fraction`` (0.2; see below) of each class of each
   side, by a fresh ``RandomState(seed)`` per side; the classifier trains on the rest, the densities are estimated on
   the held-out part. ``force_iid`` is the reference's ``--force_iid`` (the i.i.d. control its calibration
   runs): each side is halved per class and the halves swapped, P' = P₁ ∪ Q₂, Q' = P₂ ∪ Q₁.
3. **Environment classifier** (``networks.EnvClassifier`` on the ``mlp`` backbone ``MNIST_MLP``):
   z = fc(ReLU(W₂ ReLU(W₁ x))) ∈ ℝ^dim_z (hidden 390, dim_z 8), w = Linear(one-hot y), logits =
   Linear(z ⊙ w) over {P, Q}; Xavier-uniform weights (ReLU gain in the backbone), zero biases. Trained
   with cross-entropy on batches of ``batch_size`` (32) from P plus as many from Q (both shuffled, the last
   incomplete pair dropped: the reference's zipped ``drop_last`` loaders), SGD (lr 0.05, momentum 0.9,
   weight decay 1e-4), the learning rate annealed by a cosine from ``lr`` to ``swa_lr`` (0.025) over the
   first ``swa_start`` (5) epochs and then held, and stochastic weight averaging of every step after
   epoch ``swa_start`` to the end (``epochs``, 10). Training goes through :func:`automl.training.fit.fit`;
   the schedule is a :class:`~automl.training.recipe.Recipe` whose cosine ends at ``swa_lr``
   (:class:`SwaRecipe`), the averaging an ``on_step`` hook.
4. **Features**: z of the averaged model on the held-out examples of P and Q, then
   :func:`automl.ood.shift` (``samples`` 10,000 Monte-Carlo points, ``eps_div`` 1e-12, ``eps_cor`` 5e-4,
   seeded with the trial's seed; ``legacy`` for the original formulas).
5. **Trials**: ``seeds`` trial seeds drawn as ``main.py`` draws them (distinct ``RandomState(seed)
   .randint(2**31)`` values); each seeds the balancing, the split, torch (initialisation, batch order)
   and the Monte-Carlo points. Mean ± std over the trials (population std, as ``summarize.py``).

Every constant above is a :class:`ShiftRecipe` field with the reference's default. Where this differs:

- the backbone is the reference's ``mlp`` only: its ResNets start from ImageNet weights, which are not
  downloaded here (a ``domainbed-folder`` task is measured with the MLP on its pixels: expect less
  diversity shift than OoD-Bench's pretrained-ResNet figures);
- no BatchNorm, so the reference's ``update_swa_bn`` pass has nothing to do and is not run; its per-epoch
  validation prints are replaced by the averaged model's held-out accuracy in each result;
- no ε calibration (``--calibrate``): the thresholds are options; run ``force_iid`` for the control;
- nothing is scaled for the CPU: the built-in tasks are digits-sized (1,797 images), so a trial takes
  seconds. They are, however, 20-50x smaller than OoD-Bench's datasets: the held-out sets are tens to
  hundreds of points and the class-conditional KDEs noisier. A class with no more held-out points than
  ``dim_z`` has no KDE and is skipped (the reference does the same, with a warning); so that small tasks
  still measure every class, ``holdout_fraction`` left unset (None) is 0.2 raised in steps of 0.05, to at
  most 0.5, until every class holds out more than ``dim_z`` points per side. It stays 0.2 on OoD-Bench's
  datasets and on ``colored-digits`` and ``gaussian-envs``; ``rotated-digits`` (10 classes, ~30 test
  images each) gets 0.35. Each result records the fraction used; set it to pin it.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from automl.errors import ConfigError
from automl.ood import shift
from automl.ood.shift import balanced_indices
from automl.tasks.base import Task
from automl.tasks.environments import EnvironmentsData, EnvironmentsTask
from automl.training.fit import fit
from automl.training.recipe import Recipe
from automl.training.regime import StepOutput
from automl.training.seeding import seeded

#: one side's (inputs, labels)
Side = tuple[torch.Tensor, torch.Tensor]

#: OoD-Bench's held-out fraction (``--holdout_fraction``)
HOLDOUT = 0.2
#: the most the automatic held-out fraction rises to (half of each side still trains the classifier)
MAX_AUTO_HOLDOUT = 0.5

#: the flag or option name of each recipe field, as the command line spells it (errors name what was typed)
FLAGS = {"holdout_fraction": "--holdout", "dim_z": "--dim-z", "hidden": "--hidden", "epochs": "--epochs",
         "swa_start": "--swa-start", "lr": "--lr", "swa_lr": "--swa-lr", "momentum": "--momentum",
         "weight_decay": "--weight-decay", "batch_size": "--batch-size", "samples": "--samples",
         "eps_div": "--eps-div", "eps_cor": "--eps-cor", "legacy": "--legacy", "force_iid": "--iid"}


@dataclass(frozen=True)
class ShiftRecipe:
    """OoD-Bench's constants (``ood_bench/config.py`` defaults); see the module docstring."""

    holdout_fraction: float | None = None
    dim_z: int = 8
    hidden: int = 390
    epochs: int = 10
    swa_start: int = 5
    lr: float = 0.05
    swa_lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 32
    samples: int = 10_000
    eps_div: float = 1e-12
    eps_cor: float = 5e-4
    legacy: bool = False
    force_iid: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"expected {expected}, got {getattr(self, name)!r}", field=FLAGS[name])

        for name in ("dim_z", "hidden", "epochs", "batch_size", "samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "an integer >= 1")
        if isinstance(self.swa_start, bool) or not isinstance(self.swa_start, int) or self.swa_start < 0:
            raise bad("swa_start", "an integer >= 0")
        if self.swa_start >= self.epochs:
            raise ConfigError(f"the averaging starts after epoch {self.swa_start} of {self.epochs}: no step "
                              "would be averaged (OoD-Bench would keep the untrained copy); expected "
                              "--swa-start below --epochs", field="--swa-start")
        for name in ("lr", "swa_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise bad(name, "a number > 0")
        for name in ("momentum", "weight_decay", "eps_div", "eps_cor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise bad(name, "a number >= 0")
        if self.holdout_fraction is not None and (
                isinstance(self.holdout_fraction, bool) or not isinstance(self.holdout_fraction, (int, float))
                or not 0.0 < self.holdout_fraction < 1.0):
            raise bad("holdout_fraction", "a fraction in (0, 1)")

    def holdout_for(self, class_counts: Sequence[int]) -> float:
        """The held-out fraction for balanced classes of these sizes: ``holdout_fraction`` when given, else
        OoD-Bench's 0.2, raised in steps of 0.05 (to at most 0.5) until every class holds out more than
        ``dim_z`` points per side (what its KDE needs)."""
        if self.holdout_fraction is not None:
            return float(self.holdout_fraction)
        fraction = HOLDOUT
        while fraction < MAX_AUTO_HOLDOUT and min(int(n * fraction) for n in class_counts) <= self.dim_z:
            fraction = round(fraction + 0.05, 2)
        return fraction

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class SeedResult:
    """One trial: its seed, the two measures, the averaged classifier's held-out accuracy at telling P from
    Q (0.5: it cannot), the held-out points per side, the classes whose KDE was skipped, and its seconds."""

    seed: int
    diversity: float
    correlation: float
    accuracy: float
    holdout: float
    points: int
    skipped_classes: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class SwaRecipe(Recipe):
    """A :class:`Recipe` whose ``cosine`` schedule anneals from ``lr`` to ``floor`` over ``anneal`` steps and
    then holds ``floor`` (torch's ``CosineAnnealingLR(T_max=anneal, eta_min=floor)`` stepped ``anneal``
    times, as OoD-Bench's ``train.py`` steps it before the averaging starts)."""

    floor: float = 0.0
    anneal: int = 1

    def make_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        if self.schedule != "cosine":
            return super().make_schedule(optimizer)
        low, span = self.floor / self.lr, max(1, self.anneal)

        def factor(step: int) -> float:
            return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * min(step, span) / span))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EnvClassifier(nn.Module):
    """OoD-Bench's environment classifier on its ``mlp`` backbone: ``features(x)`` is z, ``forward(x, y)``
    the logits of Linear(z ⊙ Linear(one-hot y))."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 390, dim_z: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(input_dim, hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU())
        for m in self.backbone:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)
        self.fc = nn.Linear(hidden, dim_z)
        self.y_map = nn.Linear(num_classes, dim_z)
        self.head = nn.Linear(dim_z, 2)
        for m in (self.fc, self.y_map, self.head):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.backbone(x))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.y_map(nn.functional.one_hot(y, self.num_classes).float())
        out: torch.Tensor = self.head(self.features(x) * w)
        return out


class PairedBatches:
    """Epochs of (P batch, Q batch) pairs: each side shuffled by torch's global RNG at the start of an epoch,
    ``min(n_p, n_q) // batch_size`` pairs an epoch (the incomplete last pair dropped)."""

    def __init__(self, p: Side, q: Side,
                 batch_size: int) -> None:
        self.p, self.q, self.batch_size = p, q, batch_size
        self.per_epoch = min(len(p[1]), len(q[1])) // batch_size
        if self.per_epoch < 1:
            raise ConfigError(f"{min(len(p[1]), len(q[1]))} training examples per side after balancing and the "
                              f"hold-out: fewer than one batch of {batch_size}", field="--batch-size")
        self.position = 0
        self._order: tuple[torch.Tensor, torch.Tensor] | None = None
        self._epoch_state: torch.Tensor | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._order is None:
            self._epoch_state = torch.get_rng_state()
            self._order = (torch.randperm(len(self.p[1])), torch.randperm(len(self.q[1])))
        start = self.position * self.batch_size
        ip = self._order[0][start:start + self.batch_size].to(self.p[1].device)
        iq = self._order[1][start:start + self.batch_size].to(self.q[1].device)
        self.position += 1
        if self.position >= self.per_epoch:
            self.position, self._order = 0, None
        x = torch.cat([self.p[0][ip], self.q[0][iq]])
        y = torch.cat([self.p[1][ip], self.q[1][iq]])
        env = torch.cat([torch.zeros(len(ip), dtype=torch.long), torch.ones(len(iq), dtype=torch.long)]).to(x.device)
        return x, y, env

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "epoch_rng": self._epoch_state if self._order is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self._order = int(state["position"]), None
        if state["epoch_rng"] is not None:
            current = torch.get_rng_state()
            torch.set_rng_state(state["epoch_rng"])
            self._order = (torch.randperm(len(self.p[1])), torch.randperm(len(self.q[1])))
            torch.set_rng_state(current)
            self._epoch_state = state["epoch_rng"]


def trial_seeds(seed: int, n: int) -> list[int]:
    """OoD-Bench ``main.py``'s trial seeds: distinct draws of ``RandomState(seed).randint(2**31)``."""
    rng = np.random.RandomState(seed)
    out: list[int] = []
    while len(out) < n:
        s = int(rng.randint(2**31))
        if s not in out:
            out.append(s)
    return out


def split_by_class(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """OoD-Bench ``utils.split_dataset``: for each class (in order of first appearance) ``int(count *
    fraction)`` positions, after a shuffle by one ``RandomState(seed)``, go to the first part, the rest to
    the second."""
    rng = np.random.RandomState(seed)
    first: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    _, where = np.unique(y, return_index=True)
    for c in y[np.sort(where)]:
        keys = np.flatnonzero(y == c)
        n = int(len(keys) * fraction)
        rng.shuffle(keys)
        first.append(keys[:n])
        rest.append(keys[n:])
    empty = np.zeros(0, dtype=np.intp)
    return (np.concatenate(first) if first else empty), (np.concatenate(rest) if rest else empty)


def check_roles(train: Sequence[str], test: Sequence[str], task: str) -> None:
    """A ConfigError unless there is a P (train environments) and a Q (test environments) to compare."""
    if not train:
        raise ConfigError(f"{task}: no train environment, so there is no P to measure the shift against",
                          field="train")
    if not test:
        raise ConfigError(f"{task}: no test environment (the roles put every environment in train or val), so "
                          "the shift of Q against P is undefined; name one with --task-option test=[NAME]",
                          field="test")


def sides(data: EnvironmentsData, task: str) -> tuple[Side, Side]:
    """P (the train environments pooled) and Q (the test ones), after checking that both exist and that every
    input is finite (a ConfigError names the environment and the first bad example)."""
    check_roles(data.train, data.test, task)
    for name in (*data.train, *data.test):
        env = data.environments[name]
        if len(env.y) == 0:
            raise ConfigError(f"{task}: environment {name!r} has no examples", field=name)
        if env.x.is_floating_point():
            bad = ~torch.isfinite(env.x.reshape(len(env.x), -1)).all(dim=1)
            if bool(bad.any()):
                first = int(torch.nonzero(bad)[0])
                raise ConfigError(f"{task}: environment {name!r} has {int(bad.sum())} example(s) with NaN or inf "
                                  f"inputs, the first at index {first}", field=name)
    x_p, y_p, _ = data.pooled("train")
    x_q, y_q, _ = data.pooled("test")
    return (x_p, y_p), (x_q, y_q)


def _take(side: Side, index: np.ndarray) -> Side:
    i = torch.from_numpy(np.asarray(index, dtype=np.int64))
    return side[0][i], side[1][i]


def _cat(a: Side, b: Side) -> Side:
    return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])


def prepare(p: Side, q: Side, recipe: ShiftRecipe,
            seed: int) -> tuple[float, dict[str, Side]]:
    """Steps 1-2 of the recipe: the held-out fraction used and the balanced sides split into ``fit_p``,
    ``fit_q``, ``held_p``, ``held_q``."""
    kp, kq = balanced_indices(p[1].numpy(), q[1].numpy(), seed=seed)
    bp, bq = _take(p, kp), _take(q, kq)
    fraction = recipe.holdout_for(np.unique(bp[1].numpy(), return_counts=True)[1].tolist())
    if recipe.force_iid:
        p1, p2 = split_by_class(bp[1].numpy(), 0.5, seed)
        q1, q2 = split_by_class(bq[1].numpy(), 0.5, seed)
        bp, bq = _cat(_take(bp, p1), _take(bq, q2)), _cat(_take(bp, p2), _take(bq, q1))
    out = {}
    for name, side in (("p", bp), ("q", bq)):
        held, rest = split_by_class(side[1].numpy(), fraction, seed)
        out[f"held_{name}"], out[f"fit_{name}"] = _take(side, held), _take(side, rest)
    return fraction, out


def measure_seed(p: Side, q: Side, num_classes: int,
                 recipe: ShiftRecipe, seed: int, device: torch.device | None = None) -> SeedResult:
    """One trial of the recipe with trial seed ``seed``."""
    started = time.perf_counter()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fraction, prepared = prepare(p, q, recipe, seed)
    parts = {k: (x.to(device), y.to(device)) for k, (x, y) in prepared.items()}
    held = min(len(parts["held_p"][1]), len(parts["held_q"][1]))
    largest = int(np.unique(prepared["held_p"][1].numpy(), return_counts=True)[1].max()) if held else 0
    if largest <= recipe.dim_z:
        raise ConfigError(f"held-out fraction {fraction:g} leaves {held} example(s) per side after balancing the "
                          f"labels, at most {largest} of a class: a class's {recipe.dim_z}-D KDE needs more than "
                          f"{recipe.dim_z}; raise --holdout or lower --dim-z", field="--holdout")
    input_dim = int(np.prod(p[0].shape[1:]))
    with seeded(seed % 2**63):
        model = EnvClassifier(input_dim, num_classes, recipe.hidden, recipe.dim_z).to(device)
        batches = PairedBatches(parts["fit_p"], parts["fit_q"], recipe.batch_size)
        anneal = batches.per_epoch * recipe.swa_start
        train = SwaRecipe(steps=batches.per_epoch * recipe.epochs, lr=float(recipe.lr), optimizer="sgd",
                          momentum=float(recipe.momentum), weight_decay=float(recipe.weight_decay),
                          schedule="cosine", batch_size=recipe.batch_size, floor=float(recipe.swa_lr),
                          anneal=anneal)
        averaged = torch.optim.swa_utils.AveragedModel(model)

        def loss(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> StepOutput:
            x, y, env = batch
            logits = m(x, y)
            return StepOutput(terms={"loss": nn.functional.cross_entropy(logits, env)}, outputs=logits)

        def average(step: int, terms: Mapping[str, float]) -> None:
            if step >= anneal:
                averaged.update_parameters(model)

        try:
            fit(model, batches, train, loss, on_step=average)
        except FloatingPointError as exc:
            raise ConfigError(f"the environment classifier diverged (seed {seed}): {exc}; lower --lr or --swa-lr",
                              field="--lr") from None
    final: EnvClassifier = averaged.module  # type: ignore[assignment]
    final.eval()
    with torch.no_grad():
        z = {k: final.features(parts[k][0]).cpu().numpy().astype(np.float64) for k in ("held_p", "held_q")}
        right = sum(int((final(parts[k][0], parts[k][1]).argmax(1) == e).sum())
                    for k, e in (("held_p", 0), ("held_q", 1)))
    accuracy = right / (len(parts["held_p"][1]) + len(parts["held_q"][1]))
    y_p, y_q = parts["held_p"][1].cpu().numpy(), parts["held_q"][1].cpu().numpy()
    with warnings.catch_warnings():  # a skipped class is reported in the result instead
        warnings.filterwarnings("ignore", message="automl.ood.shift: skipping class")
        measures = shift(z["held_p"], y_p, z["held_q"], y_q, samples=recipe.samples, eps_div=recipe.eps_div,
                         eps_cor=recipe.eps_cor, seed=seed, legacy=recipe.legacy)
    return SeedResult(seed=seed, diversity=measures.diversity, correlation=measures.correlation,
                      accuracy=accuracy, holdout=fraction, points=held, skipped_classes=measures.skipped_classes,
                      seconds=time.perf_counter() - started)


def measure(task: Task, recipe: ShiftRecipe, *, seeds: int = 5, seed: int = 0, name: str | None = None,
            on_seed: Callable[[int, SeedResult], None] | None = None,
            device: torch.device | None = None) -> list[SeedResult]:
    """The recipe's trials on ``task`` (checked and loaded once; ``name`` is what errors call it);
    ``on_seed(i, result)`` after each trial."""
    name = name or type(task).__name__
    if not isinstance(task, EnvironmentsTask):
        raise ConfigError(f"{name} is a {task.family} task; the shift needs a multi-environment (environments "
                          "family) task", field="--task")
    task.check()
    data = task.load()
    p, q = sides(data, name)
    results: list[SeedResult] = []
    for i, s in enumerate(trial_seeds(seed, seeds)):
        results.append(measure_seed(p, q, task.info.num_classes, recipe, s, device))
        if on_seed is not None:
            on_seed(i, results[-1])
    return results


def summary(results: Sequence[SeedResult]) -> dict[str, tuple[float, float]]:
    """Mean and population std over the trials of each measure (and of the classifier's accuracy)."""
    return {key: (float(np.mean([getattr(r, key) for r in results])), float(np.std([getattr(r, key) for r in results])))
            for key in ("diversity", "correlation", "accuracy")}
