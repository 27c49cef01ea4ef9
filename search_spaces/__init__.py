"""Registered search spaces (the YAML files in this folder) and the builders that turn their configs
into ``torch.nn.Module``s."""
from pathlib import Path

#: Every ``*.yaml`` here is registered under its stem through the ``automl.spaces`` entry point.
SPACES_DIR = Path(__file__).resolve().parent
