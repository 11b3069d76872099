"""Seed image autoencoders."""

from seed_vae.config import AutoencoderConfig
from seed_vae.model import Autoencoder

__version__ = "0.1.0"
__all__ = ["Autoencoder", "AutoencoderConfig", "__version__"]
