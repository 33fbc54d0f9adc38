"""Data: format readers (formats/), splits, statistics, augmentation (augment/) and loaders.

`build.build_data` turns a `data:` section into a DataBundle; the rest are its parts.
"""
