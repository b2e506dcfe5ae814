"""Type stubs of the x86-64-v3 (AVX2) build of monohead's compiled core: the same module as
``_core`` (one source, csrc/bindings.cpp; CMakeLists.txt builds both)."""

from ._core import *  # noqa: F403
