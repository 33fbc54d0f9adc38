"""`cnnlab data fetch`, offline: a local HTTP server re-serves real dataset files and archives built here."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import FASHION, MNIST, cifar_arrays, read_idx

from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data.build import read_raw
from cnnlab.data.get import fetch as fetch_mod
from cnnlab.data.get.fetch import DATASETS, Remote, fetch
from cnnlab.errors import DataError

IDX = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


class Server:
    """Files served over HTTP on 127.0.0.1, with Range support and ways to misbehave."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_once: set[str] = set()  # paths whose next response stops half-way
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng and not server.ignore_range else 0
                if start >= len(data) and rng and not server.ignore_range:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.drop_once:  # announce everything, send half, hang up
                    server.drop_once.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def paths(self) -> list[str]:
        return [p for p, _ in self.log]


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def mnist_gz() -> dict[str, bytes]:
    """The real MNIST .gz files (a recompressed copy, so their md5s differ from the official ones)."""
    return {n: (MNIST / n).read_bytes() for n in IDX}


def serve_idx(monkeypatch, server, name: str, files: dict[str, bytes], served: dict[str, bytes] | None = None):
    """Point dataset `name` at the server, with the md5s of `files`; no system locations."""
    ds = DATASETS[name]
    remotes = tuple(Remote(r.name, md5(files[r.name]), r.urls) for r in ds.files)
    monkeypatch.setitem(DATASETS, name, replace(ds, files=remotes, system=()))
    monkeypatch.setenv("CNNLAB_MIRROR", server.url + "/mirror")
    for n, data in (served or files).items():
        server.files[f"/mirror/{n}"] = data


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_full_fetch_verifies_and_the_result_reads(server, mnist_gz, monkeypatch, capsys, tmp_path):
    serve_idx(monkeypatch, server, "mnist", mnist_gz)
    code, out, err = run(capsys, "data", "fetch", "mnist", "--dir", tmp_path / "m")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"data.format=idx data.path={tmp_path / 'm'}"
    assert "downloading " in err and "downloaded and verified mnist" in err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(IDX)  # no .part left behind
    assert all((tmp_path / "m" / n).read_bytes() == mnist_gz[n] for n in IDX)
    raw = read_raw(DataConfig(format="idx", path=str(tmp_path / "m")))
    assert raw.train.x.shape == (60000, 1, 28, 28) and len(raw.test) == 10000
    assert np.array_equal(raw.test.y.numpy(), read_idx(MNIST / "t10k-labels-idx1-ubyte.gz"))
    # Fetching again finds the verified files and sends no request.
    server.log.clear()
    code, out, err = run(capsys, "data", "fetch", "mnist", "--dir", tmp_path / "m")
    assert code == 0 and server.log == [] and "already holds verified mnist files" in err


def test_interrupted_download_resumes_with_a_range_request(server, mnist_gz, monkeypatch, tmp_path):
    serve_idx(monkeypatch, server, "mnist", mnist_gz)
    server.drop_once.add("/mirror/train-images-idx3-ubyte.gz")
    fetch("mnist", tmp_path)
    hits = [(p, r) for p, r in server.log if p.endswith("train-images-idx3-ubyte.gz")]
    size = len(mnist_gz["train-images-idx3-ubyte.gz"])
    assert hits == [("/mirror/train-images-idx3-ubyte.gz", None), ("/mirror/train-images-idx3-ubyte.gz", f"bytes={size // 2}-")]
    assert md5((tmp_path / "train-images-idx3-ubyte.gz").read_bytes()) == md5(mnist_gz["train-images-idx3-ubyte.gz"])


def test_part_file_from_an_earlier_run_resumes_or_restarts(server, mnist_gz, monkeypatch, tmp_path):
    serve_idx(monkeypatch, server, "mnist", mnist_gz)
    labels = mnist_gz["train-labels-idx1-ubyte.gz"]
    (tmp_path / "train-labels-idx1-ubyte.gz.part").write_bytes(labels[:1000])
    fetch("mnist", tmp_path)
    assert ("/mirror/train-labels-idx1-ubyte.gz", "bytes=1000-") in server.log
    assert (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes() == labels
    # A server that ignores Range answers 200 with the whole file: start over, don't append.
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz.part").write_bytes(b"garbage" * 100)
    server.ignore_range, server.log[:] = True, []
    fetch("mnist", tmp_path)
    assert server.log == [("/mirror/train-labels-idx1-ubyte.gz", "bytes=700-")]
    assert (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes() == labels
    # A complete .part: the server has nothing left to send (416) and the md5 confirms it.
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz.part").write_bytes(labels)
    server.ignore_range, server.log[:] = False, []
    fetch("mnist", tmp_path)
    assert server.log == [("/mirror/train-labels-idx1-ubyte.gz", f"bytes={len(labels)}-")]
    assert not (tmp_path / "train-labels-idx1-ubyte.gz.part").exists()


def test_checksum_mismatch_exits_2_and_leaves_nothing(server, mnist_gz, monkeypatch, capsys, tmp_path):
    wrong = dict(mnist_gz, **{"t10k-images-idx3-ubyte.gz": mnist_gz["t10k-labels-idx1-ubyte.gz"]})
    serve_idx(monkeypatch, server, "mnist", mnist_gz, served=wrong)
    code, out, err = run(capsys, "data", "fetch", "mnist", "--dir", tmp_path)
    assert code == 2 and out == ""
    line = err.strip().splitlines()[-1]  # after the progress lines, one line for the error
    assert line.startswith("cnnlab: error: could not download t10k-images-idx3-ubyte.gz")
    assert f"checksum mismatch (md5 {md5(mnist_gz['t10k-labels-idx1-ubyte.gz'])}, expected {md5(mnist_gz['t10k-images-idx3-ubyte.gz'])})" in line
    assert not (tmp_path / "t10k-images-idx3-ubyte.gz").exists() and not (tmp_path / "t10k-images-idx3-ubyte.gz.part").exists()


def test_mirrors_are_tried_in_order(server, mnist_gz, monkeypatch, tmp_path):
    ds = DATASETS["fashion-mnist"]
    labels = (FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()
    remotes = tuple(Remote(r.name, md5((FASHION / r.name).read_bytes()), (f"{server.url}/down/{r.name}", f"{server.url}/up/{r.name}"))
                    for r in ds.files)
    monkeypatch.setitem(DATASETS, "fashion-mnist", replace(ds, files=remotes, system=()))
    monkeypatch.delenv("CNNLAB_MIRROR", raising=False)
    for n in IDX:
        server.files[f"/up/{n}"] = (FASHION / n).read_bytes()
    r = fetch("fashion-mnist", tmp_path)
    assert server.paths()[:2] == ["/down/train-images-idx3-ubyte.gz", "/up/train-images-idx3-ubyte.gz"]
    assert (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes() == labels and r.format == "idx"
    with pytest.raises(DataError, match=r"could not download .*HTTP 404"):
        monkeypatch.setitem(DATASETS, "fashion-mnist", replace(ds, files=remotes[:1], system=()))
        server.files.clear()
        fetch("fashion-mnist", tmp_path / "other")


def test_system_copy_verified_by_dpkg_md5sums_is_used_without_any_request(server, monkeypatch, tmp_path):
    # Debian-style copy: recompressed .gz files (other md5s than the official ones), listed in an md5sums file.
    system = tmp_path / "usr/share/datasets/fashion-mnist"
    system.mkdir(parents=True)
    for n in IDX:
        (system / n).write_bytes((FASHION / n).read_bytes())
    dpkg = tmp_path / "dpkg"
    dpkg.mkdir()
    sums = "".join(f"{md5((FASHION / n).read_bytes())}  {str((system / n).resolve()).lstrip('/')}\n" for n in IDX)
    (dpkg / "dataset-fashion-mnist.md5sums").write_text("0123  usr/share/doc/x\n" + sums)
    monkeypatch.setattr(fetch_mod, "DPKG_INFO", dpkg)
    monkeypatch.setitem(DATASETS, "fashion-mnist", replace(DATASETS["fashion-mnist"], system=(str(system),)))
    monkeypatch.setenv("CNNLAB_MIRROR", server.url)
    r = fetch("fashion-mnist", tmp_path / "data")
    assert r.path == system and "Debian package dataset-fashion-mnist" in r.how and server.log == []
    assert not (tmp_path / "data").exists()
    # A file that no longer matches what dpkg recorded is not trusted: fetch downloads instead.
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(DataError):
        fetch("fashion-mnist", tmp_path / "data")
    assert server.log  # it asked the (empty) mirror


def test_makefile_command_finds_debians_fashion_mnist(server, monkeypatch, capsys, tmp_path):
    """`cnnlab data fetch fashion-mnist --dir data/fashion-mnist` with the real Debian package installed."""
    if not Path("/var/lib/dpkg/info/dataset-fashion-mnist.md5sums").is_file() or FASHION != Path("/usr/share/datasets/fashion-mnist"):
        pytest.skip("needs Debian's dataset-fashion-mnist package (make setup installs it as root)")
    monkeypatch.setenv("CNNLAB_MIRROR", server.url)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "data", "fetch", "fashion-mnist", "--dir", "data/fashion-mnist")
    assert code == 0, err
    assert out.strip() == "data.format=idx data.path=/usr/share/datasets/fashion-mnist"
    assert "dataset-fashion-mnist" in err and server.log == [] and not (tmp_path / "data").exists()


def cifar_tar(root: str = "cifar-10-batches-py", evil: str | None = None) -> tuple[bytes, dict[str, bytes]]:
    """cifar-10-python.tar.gz in the official layout, from 70 real CIFAR-10 images."""
    arrays = cifar_arrays(6, 1)
    members: dict[str, bytes] = {}
    (x, y, _), (tx, ty, _) = arrays["train"], arrays["test"]
    rows = lambda a: a.transpose(0, 3, 1, 2).reshape(len(a), 3072)  # noqa: E731
    for b, idx in enumerate(np.array_split(np.arange(len(x)), 5), start=1):
        members[f"{root}/data_batch_{b}"] = pickle.dumps({b"labels": y[idx].tolist(), b"data": rows(x[idx])}, protocol=2)
    members[f"{root}/test_batch"] = pickle.dumps({b"labels": ty.tolist(), b"data": rows(tx)}, protocol=2)
    members[f"{root}/batches.meta"] = pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, protocol=2)
    if evil:
        members[evil] = b"escaped"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), members


def test_tar_archive_is_extracted_and_found_again(server, monkeypatch, capsys, tmp_path):
    blob, members = cifar_tar()
    ds = DATASETS["cifar10"]
    monkeypatch.setitem(DATASETS, "cifar10", replace(
        ds, files=(Remote(ds.files[0].name, md5(blob), ds.files[0].urls),),
        extracted=tuple((name, md5(data)) for name, data in members.items())))
    monkeypatch.setenv("CNNLAB_MIRROR", server.url)
    server.files["/cifar-10-python.tar.gz"] = blob
    code, out, err = run(capsys, "data", "fetch", "cifar10", "--dir", tmp_path)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"data.format=cifar data.path={tmp_path / 'cifar-10-batches-py'}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cnnlab-fetch.json", "cifar-10-batches-py"]  # archive removed
    raw = read_raw(DataConfig(format="cifar", path=str(tmp_path / "cifar-10-batches-py")))
    assert len(raw.train) == 60 and len(raw.test) == 10 and raw.classes[3] == "c3"
    assert np.array_equal(raw.test.x.numpy(), cifar_arrays(6, 1)["test"][0].transpose(0, 3, 1, 2))
    server.log.clear()
    assert fetch("cifar10", tmp_path).how.endswith("already holds verified cifar10 files") and server.log == []


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/escaped-by-cnnlab-test.txt"])
def test_archive_members_cannot_escape(server, monkeypatch, tmp_path, evil):
    blob, _ = cifar_tar(evil=evil)
    ds = DATASETS["cifar10"]
    monkeypatch.setitem(DATASETS, "cifar10", replace(ds, files=(Remote(ds.files[0].name, md5(blob), ()),)))
    monkeypatch.setenv("CNNLAB_MIRROR", server.url)
    server.files["/cifar-10-python.tar.gz"] = blob
    with pytest.raises(DataError, match=f"member '{evil}' would be written outside the target folder"):
        fetch("cifar10", tmp_path / "t")
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped-by-cnnlab-test.txt").exists()
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["cifar-10-python.tar.gz"]  # nothing half-extracted


def test_zip_archive_with_manifest(server, monkeypatch, tmp_path):
    """tiny-imagenet-200.zip: no published md5s of its files, so a manifest records the verified extraction."""
    arrays = cifar_arrays(3, 0)["train"]
    wnids = [f"n0{i:07d}" for i in range(10)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        z.writestr("tiny-imagenet-200/words.txt", "".join(f"{w}\tthing{i}, other\n" for i, w in enumerate(wnids)))
        for k, (img, c) in enumerate(zip(arrays[0], arrays[1])):
            from PIL import Image
            b = io.BytesIO()
            Image.fromarray(img).save(b, format="PNG")
            z.writestr(f"tiny-imagenet-200/train/{wnids[c]}/images/{wnids[c]}_{k}.png", b.getvalue())
    blob = buf.getvalue()
    ds = DATASETS["tiny-imagenet"]
    monkeypatch.setitem(DATASETS, "tiny-imagenet", replace(ds, files=(Remote(ds.files[0].name, md5(blob), ()),)))
    monkeypatch.setenv("CNNLAB_MIRROR", server.url)
    server.files["/tiny-imagenet-200.zip"] = blob
    r = fetch("tiny-imagenet", tmp_path)
    assert r.path == tmp_path / "tiny-imagenet-200" and r.format == "tiny_imagenet"
    raw = read_raw(DataConfig(format="tiny_imagenet", path=str(r.path), image_size=32, cache=False))
    assert len(raw.train) == 30 and raw.classes[0] == "thing0"
    k = [int(i.split("_")[1][:-4]) for i in raw.train.ids]  # ids are the file names written above
    assert np.array_equal(raw.train.x.numpy(), arrays[0][k].transpose(0, 3, 1, 2))
    server.log.clear()
    assert "already holds" in fetch("tiny-imagenet", tmp_path).how and server.log == []
    next((r.path / "train").rglob("*.png")).write_bytes(b"x")  # a damaged file: no longer the verified data
    assert "downloaded" in fetch("tiny-imagenet", tmp_path).how and server.log


def test_unknown_name_and_unusable_dir(capsys, tmp_path, monkeypatch):
    code, _, err = run(capsys, "data", "fetch", "cifar-10")
    assert code == 2 and "unknown dataset 'cifar-10' (did you mean 'cifar10'?)" in err
    (tmp_path / "file").write_text("x")
    monkeypatch.setitem(DATASETS, "mnist", replace(DATASETS["mnist"], system=()))
    code, _, err = run(capsys, "data", "fetch", "mnist", "--dir", tmp_path / "file")
    assert code == 2 and f"--dir {tmp_path / 'file'}: cannot create the folder" in err and "Traceback" not in err


def test_progress_bar_on_a_terminal(server, mnist_gz, monkeypatch, tmp_path):
    from cnnlab.data.get.download import Progress, download

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    server.files["/f.gz"] = mnist_gz["train-labels-idx1-ubyte.gz"]
    screen = Terminal()
    download([server.url + "/f.gz"], tmp_path / "f.gz", md5(mnist_gz["train-labels-idx1-ubyte.gz"]), Progress(screen))
    assert "/f.gz" in screen.getvalue() and "downloading" not in screen.getvalue()  # the bar, not the plain line
    assert (tmp_path / "f.gz").read_bytes() == mnist_gz["train-labels-idx1-ubyte.gz"]


def test_ctrl_c_during_a_fetch_says_to_run_it_again_not_to_resume_a_run(monkeypatch, tmp_path, capsys):
    from cnnlab import cli
    from cnnlab.data.get import fetch as fetch_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_module, "fetch", interrupted)
    assert cli.main(["data", "fetch", "mnist", "--dir", str(tmp_path / "m")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "cnnlab resume" not in err and "Traceback" not in err
