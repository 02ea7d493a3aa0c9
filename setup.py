"""The compiled parts: executor/kernels.c, GGUF block products; planner/place/canonical.c, the
canonical search; planner/place/skyline.c, a pass of the skyline heuristic; planner/place/reordered.c, the
passes of the reordered heuristic (see their headers). Everything else is in pyproject.toml."""
import hashlib

from setuptools import Extension, setup


def compiled(name: str, source: str, flags: list[str], link: list[str] = ()) -> Extension:
    """An extension that carries the SHA-256 of the source it is built from (planner/compiled.py
    compares it with the source there at run time)."""
    digest = hashlib.sha256(open(source, "rb").read()).hexdigest()
    return Extension(name, [source], define_macros=[("SOURCE_SHA256", f'"{digest}"')], extra_compile_args=flags,
                     extra_link_args=list(link))


# -fno-trapping-math and -fno-math-errno let the loops with comparisons and sqrt vectorize; the
# kernels read no floating-point flags and no errno.
setup(ext_modules=[compiled("executor._kernels", "executor/kernels.c",
                            ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"], ["-fopenmp"]),
                   compiled("planner.place._canonical", "planner/place/canonical.c", ["-O2"]),
                   compiled("planner.place._skyline", "planner/place/skyline.c", ["-O2"]),
                   compiled("planner.place._reordered", "planner/place/reordered.c", ["-O2"])])
