"""Data in: bundled photos, image folders, webdataset shards."""

from vistok.data.datamodule import ImageDataModule, build_dataset
from vistok.data.folder import ImageFolderDataset, collate_images, webdataset_images
from vistok.data.images import load_rgb, pil_to_tensor, tensor_to_uint8, to_rgb
from vistok.data.sample import SamplePhotoCrops

__all__ = [
    "ImageDataModule",
    "ImageFolderDataset",
    "SamplePhotoCrops",
    "build_dataset",
    "collate_images",
    "load_rgb",
    "pil_to_tensor",
    "tensor_to_uint8",
    "to_rgb",
    "webdataset_images",
]
