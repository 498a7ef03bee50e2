"""mini-medclip: a compact MedCLIP-style image-text model, built from scratch, then backdoored."""
from .config import Config, get_config
from .runtime import pick_device, seed_everything

__version__ = "0.1.0"
__all__ = ["Config", "get_config", "pick_device", "seed_everything", "__version__"]
