"""BattGen: generative deep learning for battery materials."""

__version__ = "0.1.0"
