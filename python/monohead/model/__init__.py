"""monohead.model: the network that predicts N and W from a photo (needs PyTorch)."""
