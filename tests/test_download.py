"""The COCO downloader against a local HTTP server on 127.0.0.1 serving a small COCO built here (images zip +
annotations zip): full download, resume of a truncated .part and of a dropped connection, a server that
ignores Range, checksum mismatch, the built-in checksum table in the format fetch() checks, a corrupt .part
or archive discarded (never "verified" forever), every network failure (HTTP 404 / 500, refused connection,
unknown host, timeouts, a dropped connection) as a one-line error naming the URL, through `fetch` and through
the CLI (`error: ...`, exit 2); and the subset maker by count and by category."""
import hashlib
import http.server
import io
import json
import re
import socket
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from minimaskrcnn import cli
from minimaskrcnn.data import CocoDataset, download_coco, make_subset
from minimaskrcnn.data.download import (COCO_URL, KNOWN_MD5, DownloadError, archive_urls, extract, fetch,
                                        parse_checksum)

import local_http

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 44, "name": "bottle"}]


def square(x, y, s):
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


def build_coco():
    """Five 32x32 images; annotations: img 1 person, img 2 dog + bottle, img 3 dog (crowd), img 4 bottle,
    img 5 none. Returns (instances dict, {file name: bytes})."""
    rng = np.random.default_rng(0)
    images, files = [], {}
    for i in range(1, 6):
        name = f"{i:012d}.jpg"
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
        files[name] = buf.getvalue()
        images.append({"id": i, "file_name": name, "height": 32, "width": 32})
    spec = [(1, 1, 0), (2, 18, 0), (2, 44, 0), (3, 18, 1), (4, 44, 0)]
    annotations = [{"id": 100 + k, "image_id": img, "category_id": cat, "bbox": [4, 4, 10, 10],
                    "segmentation": square(4, 4, 10), "area": 100.0, "iscrowd": crowd}
                   for k, (img, cat, crowd) in enumerate(spec)]
    return {"info": {"description": "test"}, "licenses": [], "images": images, "annotations": annotations,
            "categories": CATEGORIES}, files


def zip_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def archives():
    data, files = build_coco()
    files["padding.bin"] = np.random.default_rng(1).bytes(300_000)  # big enough to be read in several chunks
    return {
        "/zips/val2017.zip": zip_bytes({f"val2017/{n}": b for n, b in files.items()}),
        "/annotations/annotations_trainval2017.zip": zip_bytes(
            {"annotations/instances_val2017.json": json.dumps(data), "annotations/instances_train2017.json": "{}"}),
    }


class Server:
    """http.server on 127.0.0.1:<free port> with Range support, a request log and fault switches."""

    def __init__(self, files):
        self.files, self.log = files, []
        self.honour_range, self.cut_next_after, self.content_md5, self.size_on_416 = True, None, False, True
        self.status = None  # an HTTP error code to answer every request with
        self.stall_before_headers = self.stall_after_bytes = None  # a server that stops answering
        self.release = threading.Event()  # ends the stalls when the test is over
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = owner.files.get(self.path)
                owner.log.append((self.path, self.headers.get("Range")))
                if owner.stall_before_headers:
                    owner.release.wait(owner.stall_before_headers)
                if owner.status is not None:
                    self.send_error(owner.status)
                    return
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and owner.honour_range:
                    start, status = int(rng.split("=")[1].split("-")[0]), 206
                    if start >= len(body):  # real servers (S3, nginx) say how long the file is
                        self.send_response(416)
                        if owner.size_on_416:
                            self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if owner.content_md5:
                    import base64
                    self.send_header("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode())
                self.end_headers()
                if owner.stall_after_bytes is not None:  # send some, then nothing
                    self.wfile.write(body[start:start + owner.stall_after_bytes])
                    self.wfile.flush()
                    owner.release.wait(10)
                    return
                if owner.cut_next_after is not None:  # drop the connection mid-transfer, once
                    n, owner.cut_next_after = owner.cut_next_after, None
                    self.wfile.write(body[start:start + n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd, self.url = local_http.start(Handler)


@pytest.fixture
def server(archives):
    s = Server(dict(archives))  # a copy: a test may serve other bytes
    yield s
    s.release.set()
    s.httpd.shutdown()
    s.httpd.server_close()


def md5s(archives):
    return {path.rsplit("/", 1)[1]: "md5:" + hashlib.md5(b).hexdigest() for path, b in archives.items()}


def test_full_download_extracts_a_readable_coco(tmp_path, server, archives):
    report = download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=md5s(archives),
                           progress=False)
    assert report == {"val2017.zip": "md5 verified", "annotations_trainval2017.zip": "md5 verified"}
    ds = CocoDataset(tmp_path, split="val2017")
    assert len(ds) == 5 and ds.class_names == ["background", "person", "dog", "bottle"]
    assert ds[1][1]["labels"].tolist() == [2, 3]
    assert not (tmp_path / "downloads" / "val2017.zip").exists()  # archives removed after extraction
    n_requests = len(server.log)
    again = download_coco(tmp_path, splits=("val2017",), base_url=server.url, progress=False)
    assert set(again.values()) == {"already extracted"} and len(server.log) == n_requests


def test_resume_from_a_truncated_part_file(tmp_path, server, archives):
    body = archives["/zips/val2017.zip"]
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip.part").write_bytes(body[:12345])
    download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=md5s(archives), progress=False)
    assert ("/zips/val2017.zip", "bytes=12345-") in server.log
    assert len(CocoDataset(tmp_path, split="val2017")) == 5


def test_dropped_connection_keeps_the_part_and_resumes(tmp_path, server, archives):
    server.cut_next_after = 100_000
    with pytest.raises(OSError, match=r"val2017\.zip.*run again to resume"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=md5s(archives),
                      progress=False)
    part = tmp_path / "downloads" / "val2017.zip.part"
    assert part.stat().st_size == 100_000
    download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=md5s(archives), progress=False)
    assert server.log[-2:] == [("/zips/val2017.zip", "bytes=100000-"),
                               ("/annotations/annotations_trainval2017.zip", None)]
    assert len(CocoDataset(tmp_path, split="val2017")) == 5


def test_server_ignoring_range_restarts_cleanly(tmp_path, server, archives):
    server.honour_range = False
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "val2017.zip.part").write_bytes(b"garbage that is not the start of the zip")
    download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=md5s(archives), progress=False)
    assert len(CocoDataset(tmp_path, split="val2017")) == 5


def test_checksum_mismatch_is_an_error_and_keeps_the_file(tmp_path, server, archives):
    sums = dict(md5s(archives), **{"val2017.zip": "md5:" + "0" * 32})
    with pytest.raises(ValueError, match=r"checksum mismatch for val2017\.zip.*md5 .*expected 0{32}"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert (tmp_path / "downloads" / "val2017.zip.corrupt").read_bytes() == archives["/zips/val2017.zip"]
    assert not (tmp_path / "val2017").exists() and not (tmp_path / "downloads" / "val2017.zip.done").exists()


def test_server_md5_header_and_unverified_files(tmp_path, server, archives):
    server.content_md5 = True
    report = download_coco(tmp_path / "a", splits=("val2017",), base_url=server.url, checksums={}, progress=False)
    assert report["val2017.zip"] == "md5 verified (the server's Content-MD5 header)"
    server.content_md5 = False
    with pytest.raises(ValueError, match=r"no checksum is known for val2017\.zip .*--checksum val2017\.zip=md5:"
                                         r"<hex>.*--no-verify"):
        download_coco(tmp_path / "b", splits=("val2017",), base_url=server.url, checksums={}, progress=False)
    assert not list((tmp_path / "b" / "downloads").iterdir())  # refused before a byte was stored
    report = download_coco(tmp_path / "c", splits=("val2017",), base_url=server.url, checksums={}, verify=False,
                           progress=False)
    assert report["val2017.zip"].startswith("NOT verified") and len(CocoDataset(tmp_path / "c", "val2017")) == 5


def test_content_md5_survives_a_resume(tmp_path, server, archives):
    server.content_md5, server.cut_next_after = True, 50_000
    with pytest.raises(DownloadError, match="run again to resume"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums={}, progress=False)
    report = download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums={}, progress=False)
    assert ("/zips/val2017.zip", "bytes=50000-") in server.log
    assert report["val2017.zip"] == "md5 verified (the server's Content-MD5 header)"


def test_official_urls_and_checksum_table():
    urls = archive_urls(("train2017", "val2017"))
    assert urls == {"train2017.zip": "http://images.cocodataset.org/zips/train2017.zip",
                    "annotations_trainval2017.zip":
                        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                    "val2017.zip": "http://images.cocodataset.org/zips/val2017.zip"}
    assert set(KNOWN_MD5) == set(urls) and COCO_URL == "http://images.cocodataset.org"
    with pytest.raises(ValueError, match="split must look like"):
        archive_urls(("test2017",))


def test_every_builtin_checksum_passes_fetchs_validation():
    for name, checksum in KNOWN_MD5.items():
        algorithm, hex_ = parse_checksum(checksum, name)  # the validation fetch() runs first
        assert algorithm == "md5" and len(hex_) == 32 and checksum == f"md5:{hex_}", name


@pytest.mark.parametrize("bad", ["442b8da7639aecaf257c1dceb8ba8c80", "crc32:442b8da7", "md5:442b8da7639aecaf25zz",
                                 "md5:442b", "md5:" + "0" * 33, "sha256:"])
def test_malformed_checksums_are_refused_before_any_request(tmp_path, server, bad):
    with pytest.raises(ValueError, match=r"must be 'md5:<32 hex>', 'sha1:<40 hex>' or 'sha256:<64 hex>'"):
        fetch(f"{server.url}/zips/val2017.zip", tmp_path / "val2017.zip", bad, progress=False)
    assert server.log == [] and not (tmp_path / "val2017.zip.part").exists()


def test_the_builtin_table_catches_a_file_that_is_not_the_official_one(tmp_path, server, archives):
    """A mirror gets the built-in MD5s by default; our test zip is not COCO's val2017.zip."""
    got = hashlib.md5(archives["/zips/val2017.zip"]).hexdigest()
    url = f"{server.url}/zips/val2017.zip"
    with pytest.raises(ValueError, match=rf"checksum mismatch for val2017\.zip from {re.escape(url)}: md5 {got}, "
                                         rf"expected {KNOWN_MD5['val2017.zip'][4:]}; moved to .*run again"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, progress=False)
    assert not (tmp_path / "downloads" / "val2017.zip.part").exists()
    assert (tmp_path / "downloads" / "val2017.zip.corrupt").is_file()


def test_a_sha256_prefix_is_checked_as_a_prefix(tmp_path, server, archives):
    body, url = archives["/zips/val2017.zip"], f"{server.url}/zips/val2017.zip"
    digest = hashlib.sha256(body).hexdigest()
    assert fetch(url, tmp_path / "a.zip", f"sha256:{digest[:8]}", progress=False) == \
        "sha256 verified (its first 8 hex digits)"
    assert fetch(url, tmp_path / "b.zip", f"sha256:{digest}", progress=False) == "sha256 verified"
    wrong = format((int(digest[:8], 16) + 1) % 16 ** 8, "08x")
    with pytest.raises(ValueError, match=f"sha256 {digest}, expected {wrong};"):
        fetch(url, tmp_path / "c.zip", f"sha256:{wrong}", progress=False)


def test_a_corrupt_part_is_discarded_and_the_next_call_starts_afresh(tmp_path, server, archives):
    sums = md5s(archives)
    part = tmp_path / "downloads" / "val2017.zip.part"
    part.parent.mkdir()
    part.write_bytes(bytes(12345))  # as long as a real prefix, but zeros
    with pytest.raises(ValueError, match=r"checksum mismatch for val2017\.zip"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert ("/zips/val2017.zip", "bytes=12345-") in server.log and not part.exists()
    report = download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert server.log[-2] == ("/zips/val2017.zip", None) and report["val2017.zip"] == "md5 verified"
    assert len(CocoDataset(tmp_path, split="val2017")) == 5


def test_a_complete_part_is_checked_without_downloading_it_again(tmp_path, server, archives):
    """The server answers 416 to a Range past the end: a full-length .part is verified as it is."""
    body, sums = archives["/zips/val2017.zip"], md5s(archives)
    part = tmp_path / "downloads" / "val2017.zip.part"
    part.parent.mkdir()
    part.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))  # complete, one bit wrong
    with pytest.raises(ValueError, match=r"checksum mismatch for val2017\.zip"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert server.log == [("/zips/val2017.zip", f"bytes={len(body)}-")] and not part.exists()
    part.write_bytes(body)  # complete and right: one Range request, answered 416, and no body
    n = len(server.log)
    report = download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert server.log[n:] == [("/zips/val2017.zip", f"bytes={len(body)}-"),
                              ("/annotations/annotations_trainval2017.zip", None)]
    assert report["val2017.zip"] == "md5 verified" and len(CocoDataset(tmp_path, split="val2017")) == 5
    server.size_on_416 = False  # a 416 that does not say the size: the .part cannot be trusted, restart
    (tmp_path / "y" / "downloads").mkdir(parents=True)
    (tmp_path / "y" / "downloads" / "val2017.zip.part").write_bytes(body)
    n = len(server.log)
    download_coco(tmp_path / "y", splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert server.log[n:n + 2] == [("/zips/val2017.zip", f"bytes={len(body)}-"), ("/zips/val2017.zip", None)]


def test_a_corrupt_archive_is_discarded_not_verified_forever(tmp_path, server, archives):
    """Without verification an HTML error page can arrive as val2017.zip: it fails to unzip, is moved aside,
    and the next call downloads it again (before the fix every rerun trusted it and failed)."""
    server.files["/zips/val2017.zip"] = b"<html>503 Service Unavailable</html>"
    downloads = tmp_path / "downloads"
    with pytest.raises(ValueError, match=r"val2017\.zip from .* is not a valid zip .*moved to .*val2017\.zip\.corrupt"
                                         r": run again to download afresh"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, verify=False, progress=False)
    assert not (downloads / "val2017.zip").exists() and (downloads / "val2017.zip.corrupt").is_file()
    server.files["/zips/val2017.zip"] = archives["/zips/val2017.zip"]
    report = download_coco(tmp_path, splits=("val2017",), base_url=server.url, verify=False, progress=False)
    assert report["val2017.zip"].startswith("NOT verified: verification turned off")
    assert len(CocoDataset(tmp_path, split="val2017")) == 5


def test_an_archive_left_by_an_earlier_call_is_checked_again(tmp_path, server, archives):
    sums, downloads = md5s(archives), tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "val2017.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"checksum mismatch for .*val2017\.zip \(left by an earlier call"):
        download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert server.log == [] and not (downloads / "val2017.zip").exists()
    (downloads / "val2017.zip").write_bytes(archives["/zips/val2017.zip"])
    report = download_coco(tmp_path, splits=("val2017",), base_url=server.url, checksums=sums, progress=False)
    assert report["val2017.zip"] == "md5 verified (left by an earlier call)"
    assert [path for path, _ in server.log] == ["/annotations/annotations_trainval2017.zip"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAILURES = {  # name: (server switches, base URL or None for the server's, what the message says)
    "http 404": ({"files": {}}, None, r"HTTP 404 Not Found; check the address \(a mirror's --base-url\)"),
    "http 500": ({"status": 500}, None, r"HTTP 500 Internal Server Error; try again later"),
    "refused": ({}, "refused", r"127\.0\.0\.1 refused the connection; check the address and port"),
    "unknown host": ({}, "http://nonexistent.invalid", r"the host name 'nonexistent\.invalid' cannot be resolved"),
    "timeout before the headers": ({"stall_before_headers": 10}, None, r"no answer within 0\.3 s; try again later"),
    "timeout mid-file": ({"stall_after_bytes": 1000}, None, r"stalled \(no data for 0\.3 s\); .*\.part is kept: "
                                                            r"run again to resume"),
    "dropped mid-file": ({"cut_next_after": 70_000}, None, r"(interrupted \(IncompleteRead\)|stopped at 70000 of "
                                                           r"\d+ bytes); .*\.part is kept: run again to resume"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_network_failures_are_one_line_errors_naming_the_url(tmp_path, server, archives, failure, capsys):
    switches, base, says = FAILURES[failure]
    for key, value in switches.items():
        setattr(server, key, value)
    base = {None: server.url, "refused": f"http://127.0.0.1:{free_port()}"}.get(base, base)
    url = f"{base}/zips/val2017.zip"
    start = time.perf_counter()
    with pytest.raises(DownloadError, match=re.escape(url) + ".*" + says):
        fetch(url, tmp_path / "a" / "val2017.zip", md5s(archives)["val2017.zip"], progress=False, timeout=0.3)
    assert time.perf_counter() - start < 5  # fails fast, no retry loop
    if failure == "dropped mid-file":
        server.cut_next_after = 70_000  # once more for the CLI run
    assert cli.main(["download", "--data", str(tmp_path / "b"), "--split", "val2017", "--base-url", base,
                     "--timeout", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # above it, at most tqdm's progress bar
    assert last.startswith("error: ") and re.search(re.escape(url) + ".*" + says, last), last


def test_cli_checksums_and_no_verify(tmp_path, server, archives, capsys):
    sums = md5s(archives)
    argv = ["download", "--data", str(tmp_path / "a"), "--split", "val2017", "--base-url", server.url]
    assert cli.main(argv + ["--checksum", "val2017.zip=" + sums["val2017.zip"]]) == 2  # the built-in MD5 of
    assert "checksum mismatch for annotations_trainval2017.zip" in capsys.readouterr().err  # the annotations
    assert cli.main(argv + [f"--checksum={n}={c}" for n, c in sums.items()]) == 0
    assert capsys.readouterr().out.splitlines() == ["val2017.zip: already extracted",
                                                    "annotations_trainval2017.zip: md5 verified"]
    for bad, says in [("val2017.zip", "expected NAME=ALGO:HEX"), ("train2017.zip=md5:" + "0" * 32, "NAME one of"),
                      ("val2017.zip=md5:123", "must be 'md5:<32 hex>'")]:
        assert cli.main(argv + ["--checksum", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --checksum") and says in err and len(err.strip().splitlines()) == 1
    assert cli.main(["download", "--data", str(tmp_path / "b"), "--split", "val2017", "--base-url", server.url,
                     "--no-verify"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("WARNING: --no-verify: the archives are NOT checked")
    assert "val2017.zip: NOT verified: verification turned off" in out


def test_zip_member_outside_root_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"../outside.txt": b"x"}))
    with pytest.raises(ValueError, match="outside"):
        extract(archive, tmp_path / "root")
    assert not (tmp_path / "outside.txt").exists()


# ---------------------------------------------------------------- subsets

@pytest.fixture
def full(tmp_path):
    data, files = build_coco()
    (tmp_path / "full" / "val2017").mkdir(parents=True)
    for name, b in files.items():
        (tmp_path / "full" / "val2017" / name).write_bytes(b)
    ann_file = tmp_path / "full" / "instances_val2017.json"
    ann_file.write_text(json.dumps(data))
    return ann_file, data


def test_subset_by_count(tmp_path, full):
    ann_file, data = full
    out = tmp_path / "small" / "annotations" / "instances_val2017.json"
    info = make_subset(ann_file, out, num_images=3, seed=1, images_dir=ann_file.parent / "val2017",
                       out_images_dir=tmp_path / "small" / "val2017")
    sub = json.loads(out.read_text())
    ids = [img["id"] for img in sub["images"]]
    assert len(ids) == 3 == info["images"] and ids == sorted(ids)
    assert sub["categories"] == data["categories"]  # same label space as the full dataset
    expected = [a for a in data["annotations"] if a["image_id"] in ids]
    assert sub["annotations"] == expected and info["annotations"] == len(expected)
    assert sub["info"] == data["info"]
    ds = CocoDataset(tmp_path / "small", split="val2017")
    assert ds.image_ids == ids and ds.label_to_cat_id == {1: 1, 2: 18, 3: 44}
    assert make_subset(ann_file, tmp_path / "again.json", num_images=3, seed=1)["images"] == 3
    assert json.loads((tmp_path / "again.json").read_text())["images"] == sub["images"]  # seeded
    other = {tuple(img["id"] for img in json.loads(out.read_text())["images"])}
    for seed in range(2, 8):
        make_subset(ann_file, tmp_path / "s.json", num_images=3, seed=seed)
        other.add(tuple(img["id"] for img in json.loads((tmp_path / "s.json").read_text())["images"]))
    assert len(other) > 1


def test_subset_by_category(tmp_path, full):
    ann_file, _ = full
    out = tmp_path / "dogs.json"
    info = make_subset(ann_file, out, categories=["dog"])
    sub = json.loads(out.read_text())
    assert [img["id"] for img in sub["images"]] == [2]  # image 3 has only a crowd dog: not eligible
    assert [a["id"] for a in sub["annotations"]] == [101]  # the bottle on image 2 is dropped
    assert sub["categories"] == [{"id": 18, "name": "dog"}] and info["categories"] == 1
    make_subset(ann_file, out, categories=["dog", "bottle"], num_images=2, seed=0)
    sub = json.loads(out.read_text())
    assert {img["id"] for img in sub["images"]} == {2, 4}
    assert {a["category_id"] for a in sub["annotations"]} == {18, 44}


def test_subset_errors(tmp_path, full):
    ann_file, _ = full
    before = ann_file.read_bytes()
    with pytest.raises(ValueError, match=r"unknown categories \['unicorn'\]; available: \['bottle', 'dog', 'person'\]"):
        make_subset(ann_file, tmp_path / "x.json", categories=["unicorn"])
    with pytest.raises(ValueError, match="num_images=9, but .* has 5 eligible images"):
        make_subset(ann_file, tmp_path / "x.json", num_images=9)
    with pytest.raises(ValueError, match="would overwrite"):
        make_subset(ann_file, ann_file, num_images=1)
    (ann_file.parent / "val2017" / "000000000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000000000002.jpg"):
        make_subset(ann_file, tmp_path / "x.json", images_dir=ann_file.parent / "val2017",
                    out_images_dir=tmp_path / "imgs")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "imgs").exists()  # nothing half-written
    assert ann_file.read_bytes() == before


def source_root(tmp_path):
    """A COCO root holding val2017 (five images) and its annotations; returns (root, {path: bytes} of every file)."""
    data, files = build_coco()
    root = tmp_path / "src"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name, b in files.items():
        (root / "val2017" / name).write_bytes(b)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root, {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["image folder linked", "inside the source", "the source itself"])
def test_a_subset_never_writes_into_or_deletes_from_its_source(tmp_path, layout, capsys):
    """DST/val2017 a symlink to the source images (a common way to save disk) deleted a source image; a
    destination that is the source, or inside it, is refused in one line before anything is written."""
    root, before = source_root(tmp_path)
    dst = {"image folder linked": tmp_path / "dst", "inside the source": root / "small",
           "the source itself": root}[layout]
    if layout == "image folder linked":
        dst.mkdir()
        (dst / "val2017").symlink_to(root / "val2017", target_is_directory=True)
    argv = ["download", "--data", str(root), "--split", "val2017", "--subset", str(dst), "--num-images", "2"]
    for link in ("copy", "symlink", "hardlink"):
        assert cli.main(argv + ["--link", link]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --subset ") and err.count("\n") == 1 and "source" in err, err
        assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before  # nothing lost
        assert not (dst / "annotations").exists() or layout == "the source itself"


def test_a_subset_writes_only_new_files(tmp_path, full):
    """A second subset into the same folder keeps what is there: the files it shares with the first are the
    same images (kept as they are); a different file of the same name is refused before anything is written."""
    ann_file, _ = full
    images, out_images = ann_file.parent / "val2017", tmp_path / "small" / "val2017"
    for link in ("symlink", "hardlink", "copy"):
        make_subset(ann_file, tmp_path / "small" / "a.json", num_images=3, seed=1, images_dir=images,
                    out_images_dir=out_images, link=link)
    assert all((out_images / p.name).is_symlink() for p in out_images.iterdir())  # the first run's links stay
    mine = out_images / sorted(p.name for p in out_images.iterdir())[0]
    mine.unlink()
    mine.write_bytes(b"a file of my own")
    with pytest.raises(ValueError, match=f"{mine}.* differs from .*{mine.name}"):
        make_subset(ann_file, tmp_path / "small" / "b.json", images_dir=images, out_images_dir=out_images)
    assert mine.read_bytes() == b"a file of my own" and not (tmp_path / "small" / "b.json").exists()
    assert all((images / p.name).is_file() for p in out_images.iterdir())


@pytest.mark.parametrize("flags, says", [
    (["--subset", "{dst}", "--num-images", "0"], "--num-images must be an integer >= 1; got 0"),
    (["--subset", "{dst}", "--num-images", "-3"], "--num-images must be an integer >= 1; got -3"),
    (["--num-images", "2"], "--num-images chooses the images of a subset: add --subset ROOT"),
    (["--categories", "dog", "--num-images", "1"], "--num-images and --categories choose the images of a subset"),
    (["--subset", "{dst}", "--categories", ""], "--categories holds an empty name: ['']"),
    (["--subset", ""], "--subset is empty"),
    (["--timeout", "0"], "--timeout must be a number of seconds > 0; got 0"),
    (["--base-url", " "], "--base-url is empty"),
])
def test_download_flags_that_are_zero_or_empty_are_refused_in_one_line(tmp_path, server, flags, says, capsys):
    """Refused before any request (today --num-images without --subset was ignored and COCO fetched, --subset ''
    wrote into the current folder, --timeout 0 failed on the socket with 'Operation now in progress')."""
    root, before = source_root(tmp_path)
    (root / "val2017" / "000000000001.jpg").unlink()  # an incomplete source: a download would start
    argv = ["download", "--data", str(root), "--split", "val2017", "--no-verify"]
    argv += [f.format(dst=tmp_path / "dst") for f in flags]
    argv += [] if "--base-url" in flags else ["--base-url", server.url]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says}") and err.count("\n") == 1, err
    assert server.log == [] and not (tmp_path / "dst").exists()


def test_make_subset_refuses_an_image_folder_that_is_its_source(tmp_path, full):
    """The Python API's own guard: out_images_dir resolving into images_dir (a symlink) is refused, nothing written."""
    ann_file, _ = full
    images = ann_file.parent / "val2017"
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "val2017").symlink_to(images, target_is_directory=True)
    for out_images in (tmp_path / "small" / "val2017", images / "sub"):
        with pytest.raises(ValueError, match=r"out_images_dir .* is the source image folder .* or inside it"):
            make_subset(ann_file, tmp_path / "small" / "s.json", num_images=2, images_dir=images,
                        out_images_dir=out_images)
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before and not (tmp_path / "small" / "s.json").exists()
