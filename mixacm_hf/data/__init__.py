"""Image datasets for MixACM: `images` (conversion by bit depth, augmentations), `loading` (`load_image_dataset`,
transforms, the in-memory pipeline, collation), `labels` (label checks, class names matched by name, class-balanced
selections), `streams` (streaming datasets).

Every example comes out as `pixel_values` (float32 (3, H, W) in [0, 1]) and `labels` (int).
"""

from .images import (
    CIFAR_CROP_PADDING,
    CIFAR_IMAGE_SIZE,
    EIGHT_BIT_MODES,
    SIXTEEN_BIT_MODES,
    decode_image,
    image_to_pixels,
    image_transform,
    random_crop_flip,
    read_image,
    seeded_generator,
)
from .labels import (
    check_labels,
    class_balanced_holdout,
    class_balanced_prefix,
    label_order,
    model_class_names,
    model_num_labels,
    named_classes,
)
from .loading import (
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    ROW_COLUMN,
    ExampleTransform,
    InMemoryImageDataset,
    check_dataset_classes,
    class_names,
    collate_image_batch,
    decode_all,
    epoch_setter,
    example_size,
    load_image_dataset,
    resolve_columns,
)
from .streams import EndlessStream, split_stream

__all__ = [
    "CIFAR_CROP_PADDING",
    "CIFAR_IMAGE_SIZE",
    "EIGHT_BIT_MODES",
    "IMAGE_COLUMNS",
    "LABEL_COLUMNS",
    "ROW_COLUMN",
    "SIXTEEN_BIT_MODES",
    "EndlessStream",
    "ExampleTransform",
    "InMemoryImageDataset",
    "check_dataset_classes",
    "check_labels",
    "class_balanced_holdout",
    "class_balanced_prefix",
    "class_names",
    "collate_image_batch",
    "decode_all",
    "decode_image",
    "epoch_setter",
    "example_size",
    "image_to_pixels",
    "image_transform",
    "label_order",
    "load_image_dataset",
    "model_class_names",
    "model_num_labels",
    "named_classes",
    "random_crop_flip",
    "read_image",
    "resolve_columns",
    "seeded_generator",
    "split_stream",
]
