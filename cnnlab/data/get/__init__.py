"""Getting standard datasets: fetch.py (which, where, md5), download.py (resumable downloads), archive.py
(unpacking, safely)."""
