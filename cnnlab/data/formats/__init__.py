"""Dataset formats: each is one function registered under the name used in `data.format`.

A reader takes the dataset path (plus its own options from the `data:` section) and
returns a RawDataset. It must fail with a DataError that names the file and says what
to do, never with a traceback.
"""

from cnnlab.registry import Registry

FORMATS = Registry("data format", "data.format")

# Importing the modules registers the formats.
from cnnlab.data.formats import (  # noqa: E402,F401
    cifar,
    csv_pixels,
    idx,
    image_folder,
    mat,
    npy_csv,
    tiny_imagenet,
)
