"""mini-medclip: a compact MedCLIP-style image-text model, built from scratch, then backdoored."""
from .config import Config, get_config
from .release import VERSION as __version__
from .runtime import pick_device, seed_everything

__all__ = ["Config", "get_config", "pick_device", "seed_everything", "__version__"]
