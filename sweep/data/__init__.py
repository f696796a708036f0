"""Image folders, the bundled demo data set, transforms and DataLoaders."""

from sweep.data.demo import ensure_demo_dataset
from sweep.data.folders import SPLITS, Sample, class_names, images_to_label, scan_split
from sweep.data.loaders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataBundle,
    build_data,
    dataset_num_classes,
    eval_transform,
    prediction_loader,
    resolve_root,
    train_transform,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "DataBundle",
    "Sample",
    "build_data",
    "class_names",
    "dataset_num_classes",
    "ensure_demo_dataset",
    "eval_transform",
    "images_to_label",
    "prediction_loader",
    "resolve_root",
    "scan_split",
    "train_transform",
]
