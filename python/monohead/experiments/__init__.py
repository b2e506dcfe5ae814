"""The paper's experiments (§4) as one function: a Markdown report with its PNG figures.

:func:`run_experiments` (``monohead experiments --out DIR`` on the command line) runs, on a
synthetic test set and with one predictor (the shipped network by default):

1. **Test set**: ``count`` heads (200, as in the paper) rendered by :mod:`monohead.synth` from a
   seed disjoint from the training data's (:data:`DEFAULT_SEED`), half female-looking and half
   male-looking (the generator's ``params["skin"]["sex"]``): the sexes of samples ``0, 1, 2, ...``
   are read from their random parameters (nothing is rendered for that) and the first
   ``ceil(count / 2)`` female and ``floor(count / 2)`` male indices are kept; the data set
   ``0 .. max index`` is generated (:func:`monohead.synth.dataset.generate`) and those samples
   are used. ``data=`` uses an existing data set instead.
2. **Table 1**: mask precision and recall, pooled over all pixels of all images; the angular
   error of the normals, pooled over the pixels inside both the true and the predicted mask
   of all images (mean, std, shares under 10°, 20°, 30°), overall and per sex.
3. **§4.2**: the λ sweep (Fig. 8): each sample's predicted N is integrated with its predicted
   W, ``w = 1 / (1 + λ W)``, on its predicted mask, and compared with the true depth by the
   robust σ of :func:`monohead.evaluate.robust_depth_sigma` (the median ``M`` absorbs the
   unknown depth offset; the comparison uses the intersection of the predicted mask and the
   true domain); the same sweep with the true N, W and mask is the oracle reference curve.
   Fig. 6 shows the sample with the median error at the best λ.
4. **Table 2 analogue**: the reconstructed depth (pixel units) is meshed on the intersection of
   the predicted and the true mask (the paper crops the reconstruction to the valid pixels),
   aligned by ICP (fitted on every 4th vertex) to the mesh of the true depth over the true
   mask, and compared on all its vertices by
   :func:`monohead.evaluate.mesh_errors_set` (mean, std, median, 90th percentile of the
   point-to-surface distances; ē and σ of eq. 9), for WLS at the best λ and at the paper's
   0.1, least squares (λ = 0), DCT Poisson and Frankot-Chellappa. The two Fourier methods work
   on the full rectangle: the normals outside the mask are set to (0, 0, 1) (flat) and only
   the mask is kept. Once with the predicted N, W, mask (the pipeline) and once with the true
   ones (the integrators alone).
5. **Real photos**: the astronaut of scikit-image and Grace Hopper of matplotlib, reconstructed
   by :func:`monohead.reconstruct` at the best λ and shown as in Fig. 7.

Every expensive stage is cached in ``out/cache`` (test set shards, predictions as ``.npz``,
results as JSON, each under a key of what it depends on), so a rerun skips finished stages;
figures and the report are rewritten each time. All files are written atomically.

Units: depths and mesh errors are in pixels of the ``size x size`` images; angles in degrees;
precision and recall in percent.

The package, one job per module: :mod:`~monohead.experiments.settings` (the paper's numbers, the
defaults), :mod:`~monohead.experiments.testset` (test set assembly),
:mod:`~monohead.experiments.predictors` (the predictor and its cache key),
:mod:`~monohead.experiments.stages` (Table 1, the λ sweep, Table 2),
:mod:`~monohead.experiments.figures` (figures and photos), :mod:`~monohead.experiments.cache`,
:mod:`~monohead.experiments.report` (the Markdown) and :mod:`~monohead.experiments.run`
(:func:`run_experiments`: the stages in order).
"""

from __future__ import annotations

# The package's names are its modules' __all__, re-exported as one namespace.
from . import report, run, settings, testset
from .report import *  # noqa: F403  # re-export: report.__all__ is the list
from .run import *  # noqa: F403  # re-export: run.__all__ is the list
from .settings import *  # noqa: F403  # re-export: settings.__all__ is the list
from .testset import *  # noqa: F403  # re-export: testset.__all__ is the list

__all__ = sorted({*settings.__all__, *testset.__all__, *report.__all__, *run.__all__})
