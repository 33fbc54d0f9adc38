"""`cnnlab data fetch NAME`: the standard datasets, downloaded once, verified, and ready for `data.path`.

URLs and md5 checksums are those published with torchvision's dataset classes (MNIST,
FashionMNIST, CIFAR10, CIFAR100) and, for Tiny ImageNet, the ones Tiny ImageNet loaders
in common use carry for the cs231n archive. Data already on disk is found first: in
`--dir`, or in a system location such as Debian's dataset-fashion-mnist package.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.get.archive import extract
from cnnlab.data.get.download import Progress, download, md5sum
from cnnlab.errors import DataError, suggest
from cnnlab.io import write_json

MANIFEST = ".cnnlab-fetch.json"
DPKG_INFO = Path("/var/lib/dpkg/info")  # Debian's record of each installed file's md5


@dataclass(frozen=True)
class Remote:
    """One file to download: its name, md5 and the URLs that serve it, in the order to try."""

    name: str
    md5: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    """What to download, how it unpacks, and how to tell it is already here."""

    name: str
    format: str  # the data.format that reads it
    files: tuple[Remote, ...]
    subdir: str = ""  # data.path relative to the target folder, once unpacked
    archive: bool = False  # files[0] is an archive to extract (and then delete)
    extracted: tuple[tuple[str, str], ...] = ()  # (path, md5) of unpacked files, where published
    system: tuple[str, ...] = ()  # folders where a system package may have put the same files


def _idx(name: str, mirrors: tuple[str, ...], md5s: tuple[str, str, str, str], system: tuple[str, ...]) -> Dataset:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return Dataset(name, "idx", tuple(Remote(n, m, tuple(u + n for u in mirrors)) for n, m in zip(names, md5s)), system=system)


TORONTO = "https://www.cs.toronto.edu/~kriz/"

DATASETS: dict[str, Dataset] = {
    "mnist": _idx(
        "mnist",
        ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        ("/usr/share/datasets/mnist",),
    ),
    "fashion-mnist": _idx(
        "fashion-mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("/usr/share/datasets/fashion-mnist",),
    ),
    "cifar10": Dataset(
        "cifar10", "cifar",
        (Remote("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", (TORONTO + "cifar-10-python.tar.gz",)),),
        subdir="cifar-10-batches-py", archive=True,
        extracted=(
            ("cifar-10-batches-py/data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("cifar-10-batches-py/data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("cifar-10-batches-py/data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("cifar-10-batches-py/data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("cifar-10-batches-py/data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("cifar-10-batches-py/test_batch", "40351d587109b95175f43aff81a1287e"),
            ("cifar-10-batches-py/batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        ),
    ),
    "cifar100": Dataset(
        "cifar100", "cifar",
        (Remote("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", (TORONTO + "cifar-100-python.tar.gz",)),),
        subdir="cifar-100-python", archive=True,
        extracted=(
            ("cifar-100-python/train", "16019d7e3df5f24257cddd939b257f8d"),
            ("cifar-100-python/test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
            ("cifar-100-python/meta", "7973b15100ade9c7d40fb424638fde48"),
        ),
    ),
    "tiny-imagenet": Dataset(
        "tiny-imagenet", "tiny_imagenet",
        (Remote("tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de",
                ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",)),),
        subdir="tiny-imagenet-200", archive=True,
    ),
}


@dataclass
class Fetched:
    """Where the data is and how to read it."""

    path: Path
    format: str
    how: str  # one line for the user: downloaded, found in --dir, found in a system location


def fetch(name: str, target: Path | None = None, progress: Progress | None = None) -> Fetched:
    """Find or download dataset `name`; return the path to put in data.path."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'{suggest(name, list(DATASETS))}; choose one of: {', '.join(DATASETS)}")
    ds = DATASETS[name]
    target = Path(target) if target is not None else Path("data") / name
    if _present(ds, target):
        return Fetched(target / ds.subdir if ds.subdir else target, ds.format, f"{target} already holds verified {name} files")
    for folder in ds.system:
        how = _system_copy(ds, Path(folder))
        if how:
            return Fetched(Path(folder), ds.format, how)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--dir {target}: cannot create the folder ({e.strerror or e})") from None
    mirror = os.environ.get("CNNLAB_MIRROR")  # tests and local mirrors: one base URL for every file
    for remote in ds.files:
        urls = (mirror.rstrip("/") + "/" + remote.name,) if mirror else remote.urls
        dest = target / remote.name
        if dest.is_file() and md5sum(dest) == remote.md5:
            continue  # downloaded earlier (or by hand) and intact
        download(urls, dest, remote.md5, progress)
    if ds.archive:
        archive = target / ds.files[0].name
        extract(archive, target)
        _write_manifest(ds, target)
        archive.unlink()
    path = target / ds.subdir if ds.subdir else target
    if not path.exists():
        raise DataError(f"{target}: the archive did not contain {ds.subdir}/; it is not the expected dataset")
    return Fetched(path, ds.format, f"downloaded and verified {name} into {target}")


def _present(ds: Dataset, target: Path) -> bool:
    """True when `target` already holds this dataset, verified by md5 (or by the manifest written after a verified download)."""
    if not ds.archive:
        return all((target / r.name).is_file() and md5sum(target / r.name) == r.md5 for r in ds.files)
    if ds.extracted:
        return all((target / rel).is_file() and md5sum(target / rel) == md5 for rel, md5 in ds.extracted)
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files", {})
    return (manifest.get("md5") == ds.files[0].md5 and bool(files)
            and all((target / rel).is_file() and (target / rel).stat().st_size == size for rel, size in files.items()))


def _write_manifest(ds: Dataset, target: Path) -> None:
    """Record what a verified archive unpacked to, so a later fetch finds it without downloading."""
    root = target / ds.subdir if ds.subdir else target
    files = {p.relative_to(target).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    write_json(target / MANIFEST, {"dataset": ds.name, "archive": ds.files[0].name, "md5": ds.files[0].md5,
                                   "fetched": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files})


def _system_copy(ds: Dataset, folder: Path) -> str | None:
    """A description of a verified copy in `folder`, or None when absent or not verifiable."""
    if ds.archive or not folder.is_dir():
        return None
    packages = set()
    for r in ds.files:
        path = folder / r.name
        if not path.is_file():
            return None
        digest = md5sum(path)
        if digest == r.md5:
            continue
        # Debian recompresses the .gz files, so its copy has other md5s: check those dpkg recorded.
        package = _dpkg_owner(path, digest)
        if package is None:
            return None
        packages.add(package)
    how = f"found verified {ds.name} files in {folder}"
    if packages:
        how += f" (md5 as recorded by Debian package {', '.join(sorted(packages))})"
    return how + "; nothing to download"


def _dpkg_owner(path: Path, digest: str) -> str | None:
    """The Debian package whose md5sums list `path` with this md5, if any."""
    rel = str(path.resolve()).lstrip("/")
    if not DPKG_INFO.is_dir():
        return None
    for sums in DPKG_INFO.glob("*.md5sums"):
        try:
            for line in sums.read_text(errors="replace").splitlines():
                md5, _, listed = line.partition("  ")
                if listed == rel:
                    return sums.stem.split(":")[0] if md5 == digest else None
        except OSError:
            continue
    return None
