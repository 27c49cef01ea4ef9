"""Pictures of graph cells: a small PNG of a cell's DAG, titled with its formula."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import networkx as nx

from automl.space.graph import Graph, GraphConfig
from automl.space.model import Config, SearchSpace
from automl.space.nodes import path_str


def draw_cell(graph: Graph, nodes: GraphConfig, path: Path, title: str = "") -> Path:
    """Write the DAG of ``nodes`` to ``path``: inputs on the left, the output (orange) on the right."""
    import matplotlib  # imported here: plotting is rare and matplotlib is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = graph.to_networkx(nodes)
    for layer, keys in enumerate(nx.topological_generations(g)):
        for key in keys:
            g.nodes[key]["layer"] = layer
    positions = nx.multipartite_layout(g, subset_key="layer")
    labels = {key: key[3:].upper() if isinstance(key, str) else nodes[key]["op"] for key in g.nodes}
    output = len(nodes) - 1
    colours = ["#9ecae1" if isinstance(k, str) else "#fdae6b" if k == output else "#e5e5e5" for k in g.nodes]
    width = max(4.0, 1.3 * (1 + max(d["layer"] for _, d in g.nodes(data=True))))
    fig, ax = plt.subplots(figsize=(width, 3.2))
    nx.draw_networkx_nodes(g, positions, ax=ax, node_color=colours, node_size=1400)
    nx.draw_networkx_labels(g, positions, ax=ax, labels=labels, font_size=8)
    layer = nx.get_node_attributes(g, "layer")
    for skips, style in ((False, "arc3"), (True, "arc3,rad=0.35")):  # edges past a layer bend round it
        edges = [(u, v) for u, v in g.edges if (layer[v] - layer[u] > 1) == skips]
        nx.draw_networkx_edges(g, positions, ax=ax, edgelist=edges, arrows=True, arrowsize=12, node_size=1400,
                               edge_color="#555555", connectionstyle=style)
    ax.set_title(title or graph.formula(nodes), fontsize=10)
    ax.margins(x=0.08, y=0.25)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_cells(space: SearchSpace, config: Config, folder: Path, prefix: str = "cell") -> list[tuple[str, str, Path]]:
    """Formula and PNG of every graph parameter of ``config``: ``(parameter path, formula, png path)``."""
    out = []
    for path, graph, nodes in space.graphs(config):
        name = path_str(path)
        file = folder / f"{prefix}-{_slug(path)}.png"
        formula = graph.formula(nodes)
        out.append((name, formula, draw_cell(graph, nodes, file, f"{name}: {formula}")))
    return out


def _slug(path: Sequence[Any]) -> str:
    """A file-name part for a parameter path: parameter names may hold '/' or '..', which must not
    take the picture out of its folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in path)).lstrip(".") or "root"
