"""The paper's studies as resumable runs: pair sources, method variants, the evaluation store and driver, and
the reports (tables, summary heatmaps).

Example:
    >>> from simexplain.studies import PAPER_VARIANTS
    >>> len(PAPER_VARIANTS)
    17
"""

from .driver import Evaluation, Summary, evaluate_pairs, local_device
from .inversion import Inversion, default_inversion_layers, invert_features
from .report import parse_downstream, write_report
from .sources import PairSpec, load_pairs, pair_images
from .store import Item, Pair, Store, shard_path
from .variants import PAPER_VARIANTS, Variant, parse_variants

__all__ = [
    "PAPER_VARIANTS",
    "Evaluation",
    "Inversion",
    "Item",
    "Pair",
    "PairSpec",
    "Store",
    "Summary",
    "Variant",
    "default_inversion_layers",
    "evaluate_pairs",
    "invert_features",
    "load_pairs",
    "local_device",
    "pair_images",
    "parse_downstream",
    "parse_variants",
    "shard_path",
    "write_report",
]
