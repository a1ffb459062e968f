"""Our own datatrove steps: the ones datatrove lacks (or that need an offline twist), each small."""
