"""Synthetic training data: heads rendered physically with exact ground truth (paper §3.1).

Pieces: :mod:`.head_model` (ICT-FaceKit reader, converter, sampler), :mod:`.textures` (skin and
eyes), :mod:`.hair` (strands), :mod:`.glasses`, :mod:`.scene` (pose, lights, backgrounds),
:mod:`.render` (Mitsuba 3), :mod:`.generator` (one sample), :mod:`.dataset` (shards on disk,
:class:`SyntheticHeads`), :mod:`.preview` (a sheet like the paper's Fig. 2).
Mitsuba is imported only when something is rendered.
"""

from .dataset import SyntheticHeads, generate, regenerate
from .head_model import HeadModel, read_facexmodel, write_asset

__all__ = ["Generator", "HeadModel", "SyntheticHeads", "generate", "read_facexmodel", "regenerate", "write_asset"]


def __getattr__(name: str) -> object:
    if name == "Generator":  # imports the renderer module (still not Mitsuba itself)
        from .generator import Generator

        return Generator
    raise AttributeError(f"module 'monohead.synth' has no attribute {name!r}")
