"""Data: the bundled sample photos (``sample_path``) and generators of pairs with a known answer.

Example:
    >>> from simexplain.data import planted_pairs
    >>> planted_pairs.__name__
    'planted_pairs'
"""

from .planted import PlantedPairs, planted_pairs

__all__ = ["PlantedPairs", "planted_pairs"]
