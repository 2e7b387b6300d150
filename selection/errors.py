"""The one exception `hybridserve select` (and `convert --layers-from/--select`) raise for bad input."""


class SelectionError(ValueError):
    """A layer-selection request that cannot work (bad budget, foreign selection file, bad shard...)."""
