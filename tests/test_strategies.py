"""The heuristics on hand-checked instances."""
from planner.check import check
from planner.strategies import SKYLINE_RULES, _skyline, arena, lower_bound, skyline

# Forward in time every skyline order leaves a gap (arena 14); backward one order tiles
# the peak exactly (13, the lower bound).
BACKWARD_WINS = [(2, 4, 3), (4, 6, 4), (1, 4, 6), (5, 8, 4), (0, 1, 5)]


def test_skyline_runs_backward_in_time_when_forward_misses_the_bound():
    assert lower_bound(BACKWARD_WINS) == 13
    assert min(arena(BACKWARD_WINS, _skyline(BACKWARD_WINS, rule)) for rule in SKYLINE_RULES) == 14
    offsets = skyline(BACKWARD_WINS)
    check([f"b{i}" for i in range(5)], BACKWARD_WINS, offsets, 13, 1)

