"""automl: a NAS-centric AutoML framework. One search engine over YAML search spaces, Optuna's
storage as the trial ledger.

    space = automl.load_space("digits-mlp")
    study = automl.create_study(space=space, strategy="evolution", storage="sqlite:///runs.db")
    study.optimize(n_trials=20)          # the space's task and estimator evaluate each trial
    print(study.best.config, study.best.value)
"""
from automl.errors import AutomlError, ConfigError, Infeasible, RegistryError, StorageError
from automl.ledger import Trial
from automl.space import SearchSpace, load_space, space_from_dict, space_from_yaml
from automl.strategies.base import TrialState
from automl.study import Study, create_study

__all__ = [
    "AutomlError", "ConfigError", "Infeasible", "RegistryError", "SearchSpace", "StorageError", "Study",
    "Trial", "TrialState", "create_study", "load_space", "space_from_dict", "space_from_yaml",
]
__version__ = "0.1.0"
