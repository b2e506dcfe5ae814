"""monohead.model: the network that predicts the normal map N and W = |grad h| from a face photo.

Needs PyTorch (``pip install torch``); ``import monohead`` does not import this package.

- :class:`UNet` (the generator: 8 + 8 layers with skips on 128x128) and :class:`Critic`
  (the conditional WGAN critic, spectrally normalised); :func:`encode_w` / :func:`decode_w`,
  the bounded encoding of W in the fourth output channel.
- :func:`predict` (``(B, 128, 128, 3)`` uint8 photos -> ``(normals, W, mask)`` NumPy arrays in
  the conventions' frame) and :func:`load_pretrained` (the shipped weights, no download).
- :func:`train` with :class:`TrainConfig` (resumable, seeded, DDP under ``torchrun``;
  ``monohead train`` on the command line; :func:`run_config`: the options given over a run's
  saved ones or an ``init`` generator's architecture), :func:`evaluate_model`,
  :func:`evaluate_checkpoint`, :func:`load_generator` and :func:`export_weights`.
- :class:`ToyHeads`: a tiny in-memory data set of shaded analytic heads, for tests and smoke
  runs (the hidden ``--toy`` option of the commands), not training data.
"""

from ._toy import ToyHeads
from .critic import Critic
from .data import Augment, collate
from .losses import LAMBDA_L2, critic_loss, generator_loss, l2_loss
from .predict import MASK_THRESHOLD, evaluate_model, inference_model, postprocess, predict, prediction_figure
from .train import TrainConfig, read_log, run_config, train
from .unet import W_SCALE, UNet, decode_w, encode_w
from .weights import WEIGHTS_DIR, evaluate_checkpoint, export_weights, load_generator, load_pretrained

__all__ = [
    "LAMBDA_L2",
    "MASK_THRESHOLD",
    "WEIGHTS_DIR",
    "W_SCALE",
    "Augment",
    "Critic",
    "ToyHeads",
    "TrainConfig",
    "UNet",
    "collate",
    "critic_loss",
    "decode_w",
    "encode_w",
    "evaluate_checkpoint",
    "evaluate_model",
    "export_weights",
    "generator_loss",
    "inference_model",
    "l2_loss",
    "load_generator",
    "load_pretrained",
    "postprocess",
    "predict",
    "prediction_figure",
    "read_log",
    "run_config",
    "train",
]
