"""The interference graph: nodes are device instances, edges join instances live at a common step."""
from __future__ import annotations

import io

import networkx as nx

from .place.problem import Block, conflicts


def interference_graph(instances) -> nx.Graph:
    """networkx graph of the device instances (objects with name, first, last, size, ...)."""
    device = [i for i in instances if i.memory == "device"]
    g = nx.Graph()
    for inst in device:
        g.add_node(inst.name, tensor=inst.tensor, first=inst.first, last=inst.last, size=inst.size)
    g.add_edges_from((device[a].name, device[b].name)
                     for a, b in conflicts([Block(i.first, i.last, i.size) for i in device]))
    return g


def graphml(graph: nx.Graph) -> bytes:
    """The graph as GraphML, as bytes, so the caller can write the file whole or not at all."""
    buf = io.BytesIO()
    nx.write_graphml(graph, buf)
    return buf.getvalue()
