"""The compiled parts: executor/kernels.c, GGUF block products; planner/place/canonical.c, the
canonical search; planner/place/skyline.c, a pass of the skyline heuristic (see their headers). Everything else is in pyproject.toml."""
from setuptools import Extension, setup

# -fno-trapping-math and -fno-math-errno let the loops with comparisons and sqrt vectorize; the
# kernels read no floating-point flags and no errno.
setup(ext_modules=[Extension("executor._kernels", ["executor/kernels.c"],
                             extra_compile_args=["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"],
                             extra_link_args=["-fopenmp"]),
                   Extension("planner.place._canonical", ["planner/place/canonical.c"], extra_compile_args=["-O2"]),
                   Extension("planner.place._skyline", ["planner/place/skyline.c"], extra_compile_args=["-O2"])])
