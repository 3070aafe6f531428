"""Datasets: a name registry, canonical on-disk arrays and tensor conversion.

    >>> from tavaal.data import load_dataset, to_tensor_batch
    >>> ds = load_dataset("digits", "data")        # prepares data/digits/ on first use
    >>> batch = to_tensor_batch(ds.x_train[:32], ds.info)

Segmentation datasets (``cityscapes``, ``bdd100k_seg``, ``seg_shapes``;
`tavaal.data.segmentation_sets`) store a uint8 mask per image in place of a label.

Every dataset is prepared once into ``data_dir/<name>/`` (``x_train.npy``, ``y_train.npy``,
``x_test.npy``, ``y_test.npy``, ``meta.json``) and memory-mapped afterwards. Raw downloads of the
torchvision datasets live under ``data_dir/raw/<source>/`` (see `tavaal.data.torchvision_sets`).
Importing this package loads neither torch, torchvision nor scikit-learn.
"""

# Importing these registers their builders.
from tavaal.data import (  # noqa: F401
    caltech,
    imagenet,
    segmentation_sets,
    synthetic,
    torchvision_sets,
)
from tavaal.data.image_folder import (
    ImageFolderSpec,
    declare_image_folders,
    train_image_paths,
)
from tavaal.data.imbalance import (
    class_count_entropy,
    imbalance_train,
    ratio_counts,
    subsample_per_class,
)
from tavaal.data.registry import (
    IGNORE_INDEX,
    BuildContext,
    DatasetInfo,
    PreparedDataset,
    Splits,
    has_class_groups,
    image_folder_of,
    known_input_shape,
    known_split_sizes,
    known_task,
    list_datasets,
    list_raw_sources,
    raw_source,
    register_dataset,
    stored_as_files,
)
from tavaal.data.storage import (
    FORMAT_VERSION,
    check_raw_sources,
    load_dataset,
    open_prepared,
    prepare_dataset,
)
from tavaal.data.tensors import to_tensor_batch, with_normalization

__all__ = [
    "FORMAT_VERSION",
    "IGNORE_INDEX",
    "BuildContext",
    "DatasetInfo",
    "ImageFolderSpec",
    "PreparedDataset",
    "Splits",
    "check_raw_sources",
    "class_count_entropy",
    "declare_image_folders",
    "image_folder_of",
    "imbalance_train",
    "has_class_groups",
    "known_input_shape",
    "known_split_sizes",
    "known_task",
    "list_datasets",
    "list_raw_sources",
    "load_dataset",
    "open_prepared",
    "prepare_dataset",
    "ratio_counts",
    "raw_source",
    "register_dataset",
    "stored_as_files",
    "subsample_per_class",
    "to_tensor_batch",
    "train_image_paths",
    "with_normalization",
]
