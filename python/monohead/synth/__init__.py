"""Synthetic training data: heads rendered physically with exact ground truth (paper §3.1).

Pieces: :mod:`.head_model` (ICT-FaceKit reader, converter, sampler), :mod:`.textures` (skin and
eyes), :mod:`.hair` (strands), :mod:`.glasses`, :mod:`.scene` (pose, lights, backgrounds),
:mod:`.render` (Mitsuba 3), :mod:`.generator` (one sample), :mod:`.dataset` (shards on disk,
:class:`SyntheticHeads`), :mod:`.preview` (a sheet like the paper's Fig. 2).
Mitsuba is imported only when something is rendered.
"""
