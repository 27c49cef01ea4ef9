"""The search-space model: typed nodes, the YAML loader (and the NNI and ConfigSpace readers), the writer
of our YAML, the catalog of registered spaces."""
from automl.space.catalog import load_space, read_space, spaces
from automl.space.files import space_from_file
from automl.space.graph import Graph
from automl.space.limits import SpaceLimits
from automl.space.loader import space_from_dict, space_from_yaml
from automl.space.model import Candidate, Config, SearchSpace
from automl.space.nodes import (
    Bool,
    Budget,
    Categorical,
    Constant,
    Float,
    Group,
    Int,
    Normal,
    Objective,
    Prior,
    Repeat,
    SearchDefaults,
    Subset,
)
from automl.space.writer import space_to_yaml

__all__ = [
    "Bool", "Budget", "Candidate", "Categorical", "Config", "Constant", "Float", "Graph", "Group", "Int",
    "Normal", "Objective", "Prior", "Repeat", "SearchDefaults", "SearchSpace", "SpaceLimits", "Subset", "load_space",
    "read_space", "space_from_dict", "space_from_file", "space_from_yaml", "space_to_yaml", "spaces",
]
