"""Class-conditional generation from a classifier read as an energy model (JEAT, PAPERS.md §5), and the
scores of what it generates.

:func:`class_conditional_samples` seeds each class's samples from a Gaussian fitted to that class's
training inputs, x₀ ~ N(μ_y, Σ_y), then descends the joint energy E(x, y) = −f(x)[y]:
x ← clip(x − η∇ₓE(x, y) + σξ) (σ = 0: plain energy descent, the paper's generation; σ > 0: SGLD).

The samples are scored by a classifier that never saw them and was trained on clean data alone
(:func:`train_reference_classifier`): a digits "Inception Score" (:func:`inception_score` of its
predictions), a Fréchet distance between Gaussians of its penultimate features on the samples and on
real data (:func:`frechet_distance`, pytorch-fid's formula) and the fraction of samples it labels with
the class they were drawn for. The CIFAR-10 anchors need Inception weights, which are never
downloaded: :func:`inception_scores` takes a local torchvision ``inception_v3`` checkpoint instead.
"""
from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from automl.errors import ConfigError
from automl.training.classification import classification_scores, classification_step
from automl.training.energy import joint_energy, langevin_step
from automl.training.fit import fit
from automl.training.modes import evaluating, model_device
from automl.training.recipe import Recipe
from automl.training.seeding import seeded
from automl.training.streams import tensor_batches

__all__ = [
    "GenerationOptions", "ReferenceClassifier", "class_conditional_samples", "fit_class_gaussians",
    "frechet_distance", "gaussian_frechet_distance", "inception_score", "inception_scores", "load_inception",
    "reference_accuracy", "sample_scores",
    "save_grids", "train_reference_classifier",
]

logger = logging.getLogger(__name__)

#: the ridge added to each class covariance's diagonal, as JEM's class-conditional seeds add it
DEFAULT_RIDGE = 1e-4
#: pytorch-fid's offset on the covariances' diagonal when their product's square root is not finite
FID_EPS = 1e-6
#: the usual number of splits of an Inception Score's mean ± std
IS_SPLITS = 10
#: training epochs of the reference classifier (about 98% test accuracy on digits)
REFERENCE_EPOCHS = 30
#: the size torchvision's inception_v3 takes
INCEPTION_SIZE = 299


@dataclass(frozen=True)
class GenerationOptions:
    """How samples are drawn: ``per_class`` samples of each class, ``steps`` energy-descent steps of size
    ``step_size`` with Gaussian noise of std ``noise`` (0: plain descent), inputs clamped to ``[low, high]``;
    ``seed`` fixes the draw, ``ridge`` keeps each class covariance positive definite, ``batch_size``
    samples descend together (the noise, when there is some, depends on it).

    The defaults (40 steps of 0.01, no noise) were chosen on sklearn digits ([0, 1], 8x8) from a sweep of
    steps 20..200 x step size 0.01..0.2 with a small CNN trained standard vs PGD-AT (ε = 0.1): the PGD-AT
    model's samples are then recognisable digits of all ten classes while the standard model's 8s and 9s
    already turn into checkerboards; longer or larger descents saturate the pixels of both (Fréchet
    distance up 3-10x) and blur the robust model's 7-9 too.
    """

    per_class: int = 100
    steps: int = 40
    step_size: float = 0.01
    noise: float = 0.0
    seed: int = 0
    low: float = 0.0
    high: float = 1.0
    ridge: float = DEFAULT_RIDGE
    batch_size: int = 500

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"must be {expected}, got {getattr(self, name)!r} (generation options)", field=name)

        for name, least in (("per_class", 1), ("steps", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise bad(name, f"an integer >= {least}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", "an integer")
        if not _finite(self.step_size) or self.step_size <= 0:
            raise bad("step_size", "a number > 0")
        for name in ("noise", "ridge"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise bad(name, "a number >= 0")
        for name in ("low", "high"):
            if not _finite(getattr(self, name)):
                raise bad(name, "a finite number")
        if self.low >= self.high:
            raise bad("high", f"a number above low ({self.low})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------------------------------
# sampling


def _check_data(x: torch.Tensor, y: torch.Tensor, num_classes: int, what: str) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ConfigError(f"{what}: expected inputs [N, ...] and labels [N], got shapes {tuple(x.shape)} and "
                          f"{tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ConfigError(f"{what}: labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")


def _class_gaussian(xk: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (unbiased, ``ridge`` on the diagonal) of the rows of ``xk``, in float64."""
    flat = xk.reshape(len(xk), -1).to(torch.float64)
    mean = flat.mean(0)
    if len(flat) > 1:
        cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
    else:
        cov = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=flat.device)
    return mean, cov + ridge * torch.eye(flat.shape[1], dtype=torch.float64, device=flat.device)


def fit_class_gaussians(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                        ridge: float = DEFAULT_RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean [K, D] and full covariance [K, D, D] (float64) of the flattened inputs ``x``, with
    ``ridge`` on each covariance's diagonal so that it is positive definite (a class with one example:
    the ridge alone). A class without examples is a :class:`ConfigError`."""
    _check_data(x, y, num_classes, "fit_class_gaussians")
    if not _finite(ridge) or ridge < 0:
        raise ConfigError(f"ridge must be a number >= 0, got {ridge!r}")
    means, covs = [], []
    for k in range(num_classes):
        members = x[y == k]
        if len(members) == 0:
            raise ConfigError(f"class {k} has no training examples to fit its Gaussian to")
        mean, cov = _class_gaussian(members, ridge)
        means.append(mean)
        covs.append(cov)
    return torch.stack(means), torch.stack(covs)


def _gaussian_draws(mean: torch.Tensor, cov: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` draws of N(mean, cov) from torch's global RNG (Cholesky; an eigen-decomposition when the
    covariance is only semi-definite)."""
    factor, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        values, vectors = torch.linalg.eigh(cov)
        factor = vectors * values.clamp(min=0).sqrt()
    z = torch.randn(n, len(mean), dtype=torch.float64)
    draws: torch.Tensor = mean + z @ factor.T
    return draws


def class_conditional_samples(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                              options: GenerationOptions | None = None,
                              on_step: Callable[[int, int], None] | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``options.per_class`` samples of each of ``num_classes`` classes, generated by ``model`` (logits):
    seeds x₀ ~ N(μ_y, Σ_y) fitted to ``(train_x, train_y)`` and clamped to ``[low, high]``, then ``steps``
    of x ← clamp(x − η∇ₓE(x, y) + σξ) with E(x, y) = −f(x)[y], the model in eval mode.

    Returns ``(x, y)`` on the CPU, ``y`` = 0,0,..,1,1,.. (class-major). The same options give the same
    samples; torch's global RNG and the model's train/eval mode are as the caller had them.
    ``on_step(done, total)`` is called after each descent step of each batch."""
    opts = options if options is not None else GenerationOptions()
    _check_data(train_x, train_y, num_classes, "class_conditional_samples")
    x_train = train_x.detach().to("cpu", torch.float32)
    y_train = train_y.detach().to("cpu", torch.long)
    shape = tuple(x_train.shape[1:])
    device = model_device(model)
    labels = torch.arange(num_classes).repeat_interleave(opts.per_class)
    with evaluating(model), seeded(opts.seed):
        seeds = []
        for k in range(num_classes):  # one class's covariance at a time: D x D each
            members = x_train[y_train == k]
            if len(members) == 0:
                raise ConfigError(f"class {k} has no training examples to fit its Gaussian to")
            mean, cov = _class_gaussian(members, opts.ridge)
            seeds.append(_gaussian_draws(mean, cov, opts.per_class).to(torch.float32).reshape(-1, *shape))
        x0 = torch.cat(seeds).clamp(opts.low, opts.high)
        starts = range(0, len(x0), opts.batch_size)
        total, done = len(starts) * opts.steps, 0
        out = []
        for start in starts:
            xb = x0[start:start + opts.batch_size].to(device)
            energy = functools.partial(joint_energy, y=labels[start:start + opts.batch_size].to(device))
            for _ in range(opts.steps):
                xb = langevin_step(model, xb, energy, opts.step_size, opts.noise, opts.low, opts.high)
                done += 1
                if on_step is not None:
                    on_step(done, total)
            out.append(xb.detach().cpu())
    return torch.cat(out), labels


# ----------------------------------------------------------------------------------------------------
# the independent scorer


class ReferenceClassifier(nn.Module):
    """The fixed scorer of generated samples: a small CNN for images [C, H, W] (two 3x3 convolutions, a
    2x2 max-pool, pooled to 4x4, a 128-unit layer), a two-layer MLP for flat inputs; :meth:`features` is
    its penultimate layer (what the Fréchet distance compares)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        self.input_shape = shape
        body: nn.Module
        if len(shape) == 3:
            body = nn.Sequential(
                nn.Conv2d(shape[0], width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.ReLU())
        else:
            size = math.prod(shape)
            body = nn.Sequential(nn.Flatten(), nn.Linear(size, 2 * feature_dim), nn.ReLU(),
                                 nn.Linear(2 * feature_dim, feature_dim), nn.ReLU())
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer's activations [N, feature_dim]."""
        out: torch.Tensor = self.body(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(x))
        return out


def train_reference_classifier(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, seed: int = 0,
                               epochs: int = REFERENCE_EPOCHS, batch_size: int = 64,
                               lr: float = 1e-3) -> ReferenceClassifier:
    """A :class:`ReferenceClassifier` trained on clean ``(train_x, train_y)`` alone (Adam, ``epochs``
    epochs of cross-entropy, :func:`automl.training.fit`), built and trained from ``seed``: the same
    data and seed give the same scorer. Returned in eval mode, on ``train_x``'s device."""
    _check_data(train_x, train_y, num_classes, "train_reference_classifier")
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}", field="epochs")
    x = train_x.detach().float()
    y = train_y.detach().long().to(x.device)
    batch = min(int(batch_size), len(x))
    steps = epochs * ((len(x) + batch - 1) // batch)
    with seeded(seed):
        model = ReferenceClassifier(x.shape[1:], num_classes).to(x.device)
        fit(model, tensor_batches(x, y, batch), Recipe(steps=steps, lr=lr, optimizer="adam", batch_size=batch),
            classification_step)
    return model.eval()


# ----------------------------------------------------------------------------------------------------
# scores


def inception_score(probs: np.ndarray[Any, Any] | torch.Tensor, splits: int = 1) -> tuple[float, float]:
    """exp E_x KL(p(y|x) ‖ p(y)) of class probabilities [N, K] (rows summing to 1), p(y) their mean:
    with ``splits`` > 1, the mean and (population) std over that many consecutive chunks, as the usual
    Inception Score reports it; (IS, 0.0) for one split. 1 for constant predictions, K for confident
    predictions spread evenly over K classes."""
    from scipy.special import rel_entr

    p = probs.detach().cpu().double().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ConfigError(f"inception_score: expected probabilities [N, K] with N >= 1, got shape {p.shape}")
    if not isinstance(splits, int) or not 1 <= splits <= len(p):
        raise ConfigError(f"inception_score: splits must be an integer from 1 to the {len(p)} samples, got {splits!r}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(0, keepdims=True)
        scores.append(float(np.exp(rel_entr(part, marginal).sum(1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


def gaussian_frechet_distance(mu1: np.ndarray[Any, Any], sigma1: np.ndarray[Any, Any], mu2: np.ndarray[Any, Any],
                              sigma2: np.ndarray[Any, Any], eps: float = FID_EPS) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), as pytorch-fid's ``calculate_frechet_distance`` computes it:
    ``eps`` on both diagonals when the product's square root is not finite, the imaginary part of a
    numerically complex root dropped (a :class:`ValueError` when its diagonal is not ~0)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ConfigError(f"Fréchet distance: the two Gaussians differ in dimension ({mu1.shape} vs {mu2.shape})")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are expected with fewer samples than features
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            logger.info("Fréchet distance: singular product; adding %g to the diagonal of the covariances", eps)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(features_a: np.ndarray[Any, Any] | torch.Tensor, features_b: np.ndarray[Any, Any] | torch.Tensor,
                     eps: float = FID_EPS, method: str = "auto") -> float:
    """The Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets [N, D].

    ``method="sqrtm"``: pytorch-fid's computation (:func:`gaussian_frechet_distance`). ``"svd"``: the same
    quantity from the centred features, Tr (Σ₁Σ₂)^½ = Σ singular values of A₁A₂ᵀ / √((N₁−1)(N₂−1)), exact
    and O(N²D) where sqrtm is O(D³) and works on a singular product. ``"auto"`` (default): ``svd`` when
    either set has no more examples than dimensions (the product is then singular), else ``sqrtm``."""
    a, b = (f.detach().cpu().double().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, np.float64)
            for f in (features_a, features_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ConfigError(f"Fréchet distance: expected two feature sets [N, D] of the same D and N >= 2, got shapes "
                          f"{a.shape} and {b.shape}")
    if method not in ("auto", "sqrtm", "svd"):
        raise ConfigError(f"Fréchet distance: method must be auto, sqrtm or svd, got {method!r}")
    if method == "sqrtm" or (method == "auto" and min(len(a), len(b)) > a.shape[1]):
        return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False), eps)
    ca, cb = a - a.mean(0), b - b.mean(0)
    diff = a.mean(0) - b.mean(0)
    trace_sqrt = float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum()) / math.sqrt((len(a) - 1) * (len(b) - 1))
    return float(diff.dot(diff) + (ca * ca).sum() / (len(a) - 1) + (cb * cb).sum() / (len(b) - 1) - 2 * trace_sqrt)


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
             batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size].to(device, torch.float32)).cpu() for i in range(0, len(x), batch_size)])


def _split_order(n: int) -> np.ndarray[Any, Any]:
    """A fixed permutation of the samples before splitting them (they come class-major)."""
    return np.random.default_rng(0).permutation(n)


def sample_scores(classifier: ReferenceClassifier, samples_x: torch.Tensor, samples_y: torch.Tensor,
                  real_x: torch.Tensor, splits: int = IS_SPLITS, batch_size: int = 500) -> dict[str, Any]:
    """Scores of generated ``(samples_x, samples_y)`` by the independent ``classifier``:

    - ``inception_score``: exp E_x KL(p(y|x) ‖ p(y)) over all samples ("digits-IS"), and
      ``inception_score_mean`` / ``inception_score_std`` over ``splits`` chunks of a fixed shuffle;
    - ``frechet_distance``: between Gaussians of the classifier's features on the samples and on ``real_x``;
    - ``class_accuracy`` (and ``per_class_accuracy``): how often the classifier names the class a sample
      was drawn for."""
    if len(samples_x) != len(samples_y) or len(samples_x) < 2 or len(real_x) < 2:
        raise ConfigError(f"sample_scores: expected >= 2 samples with one label each and >= 2 real inputs, got "
                          f"{len(samples_x)} samples, {len(samples_y)} labels, {len(real_x)} real inputs")
    device = model_device(classifier)
    with evaluating(classifier):
        sample_features = _batched(classifier.features, samples_x, device, batch_size)
        real_features = _batched(classifier.features, real_x, device, batch_size)
        with torch.no_grad():
            logits = classifier.head(sample_features.to(device)).cpu()
    probs = torch.softmax(logits.double(), dim=1).numpy()
    score, _ = inception_score(probs)
    mean, std = inception_score(probs[_split_order(len(probs))], min(splits, len(probs)))
    labels = samples_y.cpu().long()
    hits = logits.argmax(1) == labels
    num_classes = logits.shape[1]
    per_class = [float(hits[labels == k].float().mean()) if bool((labels == k).any()) else None
                 for k in range(num_classes)]
    return {"inception_score": score, "inception_score_mean": mean, "inception_score_std": std,
            "inception_score_splits": min(splits, len(probs)),
            "frechet_distance": frechet_distance(sample_features, real_features),
            "class_accuracy": float(hits.float().mean()), "per_class_accuracy": per_class,
            "samples": len(samples_x), "real": len(real_x), "feature_dim": int(sample_features.shape[1])}


def reference_accuracy(classifier: ReferenceClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """The reference classifier's clean accuracy on ``(x, y)``."""
    device = model_device(classifier)
    accuracy, _ = classification_scores(classifier, x.to(device, torch.float32), y.to(device).long(), batch_size=500)
    return accuracy


# ----------------------------------------------------------------------------------------------------
# the Inception path (a local checkpoint: nothing is downloaded)


def load_inception(checkpoint: str | Path) -> nn.Module:
    """torchvision's ``inception_v3`` (aux logits, 1000 classes) with the state dict in ``checkpoint``
    (a local file, e.g. torchvision's ``inception_v3_google-0cc3c7bd.pth``), in eval mode; a missing or
    incompatible file is a :class:`ConfigError` naming it."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError("no such file (an Inception v3 state dict, e.g. torchvision's "
                          "inception_v3_google-0cc3c7bd.pth; nothing is downloaded)", source=str(path))
    try:
        from torchvision.models import inception_v3
    except ImportError as exc:
        raise ConfigError(f"the Inception scores need torchvision ({exc})", source=str(path)) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: torch raises many types
        raise ConfigError(f"not a torch state dict ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                          source=str(path)) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"expected an inception_v3 state dict, got a {type(state).__name__}", source=str(path))
    model: nn.Module = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"not an inception_v3 state dict (aux_logits=True, 1000 classes): "
                          f"{str(exc).splitlines()[0]}", source=str(path)) from None
    return model.eval()


def _inception_outputs(model: nn.Module, x: torch.Tensor, device: torch.device,
                       batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities [N, 1000] and 2048-d pool features of inputs in [0, 1]: grey images repeated
    to three channels, resized to 299x299 (bilinear) and scaled to [-1, 1], as Google's weights expect."""
    import torch.nn.functional as F

    pooled: list[torch.Tensor] = []
    hook = model.get_submodule("avgpool").register_forward_hook(lambda _m, _i, out: pooled.append(out.flatten(1).cpu()))
    probs = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(device, torch.float32)
                if xb.shape[1] == 1:
                    xb = xb.repeat(1, 3, 1, 1)
                xb = F.interpolate(xb, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
                probs.append(torch.softmax(model(2 * xb - 1).double(), dim=1).cpu())
    finally:
        hook.remove()
    return torch.cat(probs), torch.cat(pooled)


def inception_scores(samples_x: torch.Tensor, real_x: torch.Tensor, checkpoint: str | Path,
                     splits: int = IS_SPLITS, batch_size: int = 50) -> dict[str, Any]:
    """The Inception Score (softmax of the logits, mean ± std over ``splits`` chunks of a fixed shuffle)
    of images [N, 1|3, H, W] in [0, 1] and their Fréchet Inception distance to ``real_x`` on the 2048-d
    pool features, with the local ``checkpoint`` of torchvision's ``inception_v3``. torchvision's
    weights are not the TF graph the published IS/FID use, so the numbers are close to, not equal to,
    those anchors."""
    for name, x in (("samples", samples_x), ("real", real_x)):
        if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) < 2:
            raise ConfigError(f"inception_scores: {name} must be >= 2 images [N, 1|3, H, W], got shape "
                              f"{tuple(x.shape)}")
    model = load_inception(checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    probs, features = _inception_outputs(model, samples_x, device, batch_size)
    _, real_features = _inception_outputs(model, real_x, device, batch_size)
    used = min(splits, len(probs))
    mean, std = inception_score(probs[torch.from_numpy(_split_order(len(probs)))], used)
    return {"inception_score": mean, "inception_score_std": std, "inception_score_splits": used,
            "frechet_inception_distance": frechet_distance(features, real_features),
            "checkpoint": str(checkpoint)}


# ----------------------------------------------------------------------------------------------------
# grids


def _tiles(x: torch.Tensor, low: float, high: float) -> np.ndarray[Any, Any]:
    """Images [N, C, H, W] as uint8 [N, H', W', C] (C 1 or 3), upscaled to at least 32 pixels a side."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ConfigError(f"save_grids: expected images [N, 1|3, H, W], got shape {tuple(x.shape)}")
    scaled = ((x.detach().cpu().float() - low) / (high - low)).clamp(0, 1)
    pixels = (scaled * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    factor = max(1, math.ceil(32 / max(pixels.shape[1], pixels.shape[2])))
    return np.asarray(pixels.repeat(factor, axis=1).repeat(factor, axis=2))


def _grid(tiles: np.ndarray[Any, Any], rows: int, columns: int, pad: int = 2) -> np.ndarray[Any, Any]:
    h, w, c = tiles.shape[1:]
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles[:rows * columns]):
        r, col = divmod(i, columns)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = tile
    return canvas


def _save_png(canvas: np.ndarray[Any, Any], path: Path) -> None:
    from PIL import Image

    Image.fromarray(canvas[..., 0] if canvas.shape[2] == 1 else canvas).save(path)  # uint8: "L" or "RGB"


def save_grids(x: torch.Tensor, y: torch.Tensor, out_dir: str | Path, num_classes: int, low: float = 0.0,
               high: float = 1.0, columns: int = 10) -> list[Path]:
    """PNG grids of images ``x`` [N, 1|3, H, W] in ``[low, high]`` (grey for one channel): ``class_<k>.png``
    with every sample of class k, and ``grid.png`` with a row of the first ``columns`` samples per class.
    Returns the files written."""
    if len(x) != len(y):
        raise ConfigError(f"save_grids: {len(x)} images but {len(y)} labels")
    if not low < high:
        raise ConfigError(f"save_grids: low ({low}) must be below high ({high})")
    tiles = _tiles(x, low, high)
    labels = y.detach().cpu().long().numpy()
    root = Path(out_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the grids to {root}: {exc.strerror or exc}") from None
    written = []
    blank = np.full_like(tiles[:1], 255)
    rows = []
    for k in range(num_classes):
        mine = tiles[labels == k]
        if len(mine):
            side = math.ceil(math.sqrt(len(mine)))
            path = root / f"class_{k}.png"
            _save_png(_grid(mine, math.ceil(len(mine) / side), side), path)
            written.append(path)
        row = mine[:columns]
        rows.append(np.concatenate([row, *([blank] * (columns - len(row)))]) if len(row) < columns else row)
    path = root / "grid.png"
    _save_png(_grid(np.concatenate(rows), num_classes, columns), path)
    written.append(path)
    return written
