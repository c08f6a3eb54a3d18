"""Head-pose estimation by knowledge distillation from a cached convolutional ensemble."""
__version__ = "0.1.0"
