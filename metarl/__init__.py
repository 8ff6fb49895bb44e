"""metarl: a JAX/Flax benchmark suite for meta-reinforcement learning."""
import os

__version__ = "0.1.0"


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (default ``$JAX_COMPILATION_CACHE_DIR`` or ``.jax_cache``).

    Compiling a Brax step or a meta-update takes tens of seconds on a CPU; the cache makes a repeated
    run (a resumed one, the same benchmark again) skip it."""
    import jax

    path = os.path.abspath(path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or ".jax_cache")
    jax.config.update("jax_compilation_cache_dir", path)
    # programs that compile in under a second are not worth a file, unless the environment says otherwise
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0)))
    return path
