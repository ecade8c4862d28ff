"""Built-in model families, one module each (committee machines: :mod:`.committee`)."""
