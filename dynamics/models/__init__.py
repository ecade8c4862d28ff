"""Built-in model families, one module each (its Model, sampler and hooks; committee
machines: :mod:`.committee`; in-context regression: :mod:`.icl`)."""
