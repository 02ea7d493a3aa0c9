"""The interference graph: nodes are device instances, edges join instances live at a common step.

networkx is imported where a graph is made, not with this module: it is slow to import, and
only `--graph` needs it (docs/measurements.md).
"""
from __future__ import annotations

import io

from .place.problem import Block, conflict_count, conflicts
from .sizes import mib

# networkx holds about EDGE_BYTES an edge while the graph is built (2.4 million edges: 1.45 GB
# and a GraphML file of 101 MB); past MAX_EDGES, the graph is refused before it is made
EDGE_BYTES = 600
MAX_EDGES = 5_000_000


def too_large(instances) -> str | None:
    """Why the interference graph of `instances` is not made (MAX_EDGES), or None."""
    edges = conflict_count(_blocks(_device(instances)))
    if edges <= MAX_EDGES:
        return None
    return (f"the interference graph would have {edges:,} edges (pairs of instances live at one step), about "
            f"{mib(edges * EDGE_BYTES)} while it is made; at most {MAX_EDGES:,} are written")


def _device(instances) -> list:
    return [i for i in instances if i.memory == "device"]


def _blocks(device) -> list[Block]:
    return [Block(i.first, i.last, i.size) for i in device]


def interference_graph(instances):
    """networkx graph of the device instances (objects with name, first, last, size, ...)."""
    import networkx as nx
    device = _device(instances)
    g = nx.Graph()
    for inst in device:
        g.add_node(inst.name, tensor=inst.tensor, first=inst.first, last=inst.last, size=inst.size)
    g.add_edges_from((device[a].name, device[b].name) for a, b in conflicts(_blocks(device)))
    return g


def graphml(graph) -> bytes:
    """The graph as GraphML, as bytes, so the caller can write the file whole or not at all."""
    import networkx as nx
    buf = io.BytesIO()
    nx.write_graphml(graph, buf)
    return buf.getvalue()
