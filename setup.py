"""The one compiled part: executor/kernels.c, GGUF block products (see its header). Everything
else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("executor._kernels", ["executor/kernels.c"],
                             extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp"])])
