"""ltag: recognise landmarks in photos, write them as keywords, keep a searchable catalog.

The runtime never imports torch: recognition runs on onnxruntime + faiss + numpy.
"""

__version__ = "0.1.0"

from landmark_tagger.errors import (  # noqa: E402
    BundleError,
    CatalogError,
    LtagError,
    MetadataError,
    MetadataWriteError,
    RenameError,
    UndoError,
    UnsupportedImageError,
)

__all__ = [
    "__version__",
    "LtagError",
    "BundleError",
    "CatalogError",
    "MetadataError",
    "MetadataWriteError",
    "RenameError",
    "UndoError",
    "UnsupportedImageError",
]
