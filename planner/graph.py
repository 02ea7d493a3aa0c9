"""The interference graph: nodes are device instances, edges join instances live at a common step.

networkx is imported where a graph is made, not with this module: it is slow to import, and
only `--graph` needs it (docs/measurements.md).
"""
from __future__ import annotations

import io

from .place.problem import Block, conflicts


def interference_graph(instances):
    """networkx graph of the device instances (objects with name, first, last, size, ...)."""
    import networkx as nx
    device = [i for i in instances if i.memory == "device"]
    g = nx.Graph()
    for inst in device:
        g.add_node(inst.name, tensor=inst.tensor, first=inst.first, last=inst.last, size=inst.size)
    g.add_edges_from((device[a].name, device[b].name)
                     for a, b in conflicts([Block(i.first, i.last, i.size) for i in device]))
    return g


def graphml(graph) -> bytes:
    """The graph as GraphML, as bytes, so the caller can write the file whole or not at all."""
    import networkx as nx
    buf = io.BytesIO()
    nx.write_graphml(graph, buf)
    return buf.getvalue()
