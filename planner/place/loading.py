"""OR-Tools loads only where a method needs it (CP-SAT, the layer splits): 0.4 s to import
alone, and up to 2 s beside a search that makes its orders in Python (2 x 10^4 blocks). A
method that needs it starts only with OR_TOOLS_IMPORT_S left, or once it is loaded (a limit of
1.5 s on 2 x 10^4 blocks ran 0.7-2.6 s over, importing it)."""
from __future__ import annotations

import sys
import time

OR_TOOLS_IMPORT_S = 1.0


def or_tools_in_time(deadline: float) -> bool:
    return "ortools.sat.python.cp_model" in sys.modules or deadline - time.monotonic() > OR_TOOLS_IMPORT_S
