"""The 15 MNIST-C corruptions (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer
Vision", arXiv:1906.02337), re-derived from the reference generator google-research/mnist-c
(``corruptions.py``) as seeded, batched torch code.

Each corruption takes float32 images (N, 1, 28, 28) in [0, 1] and returns float32 images of the
same shape on the 8-bit grid (multiples of 1/255), clipped to [0, 1], as the static MNIST-C set
stores them. The severity levels and their parameters are the reference's; ``severity=None``
picks the level MNIST-C itself was made with (the reference function's default argument).
Randomness comes from one ``torch.Generator`` per call, seeded from (seed, corruption name), so
a corruption's output depends only on the images, the seed and the severity.

    >>> from safetycheck.measures.corruptions import corrupt, CORRUPTIONS
    >>> foggy = corrupt(images, "fog", seed=0)

``identity`` is available for comparisons but is not one of the 15 (:data:`CORRUPTIONS`) and never
part of the mean. :mod:`.dataset` caches whole corrupted test sets on disk and loads the official
static set; :mod:`.gallery` renders one example per corruption.
"""

from safetycheck.measures.corruptions.catalogue import (
    ALL_NAMES,
    CORRUPTIONS,
    IMPLEMENTATION_VERSION,
    Corruption,
    corrupt,
    corrupt_all,
    get_corruption,
)
from safetycheck.measures.corruptions.dataset import (
    cache_path,
    generate_corrupted,
    load_corrupted,
    load_official,
)
from safetycheck.measures.corruptions.gallery import gallery, write_gallery

__all__ = [
    "ALL_NAMES",
    "CORRUPTIONS",
    "IMPLEMENTATION_VERSION",
    "Corruption",
    "corrupt",
    "corrupt_all",
    "get_corruption",
    "load_corrupted",
    "load_official",
    "cache_path",
    "generate_corrupted",
    "gallery",
    "write_gallery",
]
