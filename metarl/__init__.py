"""metarl: a JAX/Flax benchmark suite for meta-reinforcement learning."""
__version__ = "0.1.0"
