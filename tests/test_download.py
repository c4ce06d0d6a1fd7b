"""The COCO downloader against a local HTTP server on 127.0.0.1 serving a small COCO built here (images zip +
annotations zip): full download, resume of a truncated .part and of a dropped connection, a server that
ignores Range, checksum mismatch; and the subset maker by count and by category."""
import hashlib
import http.server
import io
import json
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from minimaskrcnn.data import CocoDataset, download_coco, make_subset
from minimaskrcnn.data.download import COCO_URL, KNOWN_MD5, archive_urls, extract

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
        self.honour_range, self.cut_next_after, self.content_md5 = True, None, False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = owner.files.get(self.path)
                owner.log.append((self.path, self.headers.get("Range")))
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and owner.honour_range:
                    start, status = int(rng.split("=")[1].split("-")[0]), 206
                    if start >= len(body):
                        self.send_error(416)
                        return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if owner.content_md5:
                    import base64
                    self.send_header("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode())
                self.end_headers()
                if owner.cut_next_after is not None:  # drop the connection mid-transfer, once
                    n, owner.cut_next_after = owner.cut_next_after, None
                    self.wfile.write(body[start:start + n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


@pytest.fixture
def server(archives):
    s = Server(archives)
    yield s
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
    report = download_coco(tmp_path / "a", splits=("val2017",), base_url=server.url, progress=False)
    assert report["val2017.zip"] == "md5 verified (the server's Content-MD5 header)"
    server.content_md5 = False
    report = download_coco(tmp_path / "b", splits=("val2017",), base_url=server.url, progress=False)
    assert report["val2017.zip"].startswith("NOT verified")


def test_official_urls_and_checksum_table():
    urls = archive_urls(("train2017", "val2017"))
    assert urls == {"train2017.zip": "http://images.cocodataset.org/zips/train2017.zip",
                    "annotations_trainval2017.zip":
                        "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                    "val2017.zip": "http://images.cocodataset.org/zips/val2017.zip"}
    assert set(KNOWN_MD5) == set(urls) and COCO_URL == "http://images.cocodataset.org"
    with pytest.raises(ValueError, match="split must look like"):
        archive_urls(("test2017",))


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
