"""Built-in model families, one module each (its Model, sampler and hooks)."""
