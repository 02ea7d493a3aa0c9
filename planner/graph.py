"""The interference graph: nodes are device instances, edges join instances live at a common step."""
from __future__ import annotations

import heapq
import io
from typing import Iterator

import networkx as nx

Block = tuple[int, int, int]   # (first, last, size): a closed step interval and aligned bytes


def conflicts(blocks: list[Block]) -> Iterator[tuple[int, int]]:
    """Every pair (i, j) of blocks whose closed intervals intersect, by one sweep over start times."""
    order = sorted(range(len(blocks)), key=lambda i: blocks[i][0])
    live: list[tuple[int, int]] = []        # heap of (last, index)
    for i in order:
        first = blocks[i][0]
        while live and live[0][0] < first:
            heapq.heappop(live)
        for _, j in live:
            yield j, i
        heapq.heappush(live, (blocks[i][1], i))


def interference_graph(instances) -> nx.Graph:
    """networkx graph of the device instances (objects with name, first, last, size, ...)."""
    device = [i for i in instances if i.memory == "device"]
    g = nx.Graph()
    for inst in device:
        g.add_node(inst.name, tensor=inst.tensor, first=inst.first, last=inst.last, size=inst.size)
    g.add_edges_from((device[a].name, device[b].name)
                     for a, b in conflicts([(i.first, i.last, i.size) for i in device]))
    return g


def graphml(graph: nx.Graph) -> bytes:
    """The graph as GraphML, as bytes, so the caller can write the file whole or not at all."""
    buf = io.BytesIO()
    nx.write_graphml(graph, buf)
    return buf.getvalue()
