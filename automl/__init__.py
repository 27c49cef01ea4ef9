"""automl: a NAS-centric AutoML framework. One search engine over YAML search spaces, Optuna's
storage as the trial ledger.

    space = automl.load_space("digits-mlp")
    study = automl.create_study(space=space, strategy="evolution", storage="sqlite:///runs.db",
                                checkpoints="runs/checkpoints")   # where trained models are kept
    study.optimize(n_trials=20)          # the space's task and estimator evaluate each trial
    print(study.best.config, study.best.value)
    automl.export(study, "exported/")    # the best trial's model.pt2, model.onnx, weights.pt, card.json, MODEL.md
    model = automl.load_model("exported/")
"""
from automl.errors import AutomlError, ConfigError, Infeasible, RegistryError, StorageError
from automl.export import ExportError, ExportResult, export, load_model  # torch is imported inside them
from automl.ledger import Trial
from automl.pipeline import run_pipeline
from automl.pruning import Pruned, TrialHandle
from automl.space import SearchSpace, load_space, space_from_dict, space_from_yaml
from automl.strategies.base import TrialState
from automl.study import Study, create_study

__all__ = [
    "AutomlError", "ConfigError", "ExportError", "ExportResult", "Infeasible", "Pruned", "RegistryError",
    "SearchSpace", "StorageError", "Study", "Trial", "TrialHandle", "TrialState", "create_study", "export",
    "load_model", "load_space", "run_pipeline", "space_from_dict", "space_from_yaml",
]
__version__ = "0.1.0"
