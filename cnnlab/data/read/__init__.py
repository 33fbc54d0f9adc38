"""Reading datasets: one reader per format (cifar.py, csv_pixels.py, hf.py, idx.py, image_folder.py, mat.py,
npy_csv.py, tiny_imagenet.py; user.py for a format of the user's own), each registered once under the
name `data.format` uses (registry.py; catalog.py imports them all). A format whose data are image
files also lists them without decoding (its `lister`, for the file-backed path: listing.py).
Helpers: tree.py (a folder or .zip as one file tree), source.py (what a file-backed split reads: a
tree, or a Hugging Face dataset's rows, hf_rows.py), decode.py, cache.py (the decoded-data cache),
labels.py, safe_pickle.py (CIFAR's pickles, arrays only), mat_child.py (.mat files read in a child
process). The readers import torch lazily, so checking a config does not import it."""
