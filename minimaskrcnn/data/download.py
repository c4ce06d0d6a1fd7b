"""Download the official COCO images and annotations: resumable, checksum-verified, then extracted.

    download_coco("data/coco", splits=("val2017",))   # -> data/coco/val2017/, data/coco/annotations/

Each archive is fetched into root/downloads/<name>.part. An interrupted download keeps its .part file and
the next call continues it with an HTTP Range request (a server that ignores Range sends the whole file
again, and the .part is restarted). A finished archive is checked, then extracted into root; a marker
root/downloads/<name>.done makes later calls skip it.

Checksums, honestly: cocodataset.org publishes none. KNOWN_MD5 holds the MD5s that independent
projects (MLPerf's download scripts, several dataset loaders) quote identically for the official
archives; they are used when base_url is the official server. For a mirror or another server, pass
`checksums` ({archive name: "md5:<hex>" | "sha1:<hex>" | "sha256:<hex>"}); failing both, a Content-MD5
header from the server is used; failing that, only the length is checked, and the report says so.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from .. import paths

COCO_URL = "http://images.cocodataset.org"
KNOWN_MD5 = {
    "train2017.zip": "cced6f7f71b7629ddf16f17bbcfab6b2",  # 18 GB
    "val2017.zip": "442b8da7639aecaf257c1dceb8ba8c80",  # 778 MB
    "annotations_trainval2017.zip": "f4bbac642086de4f52a3fdda2de5fa2c",  # 241 MB
}


def archive_urls(splits=("train2017", "val2017"), base_url: str = COCO_URL) -> dict[str, str]:
    """{archive name: URL} for the image zips of `splits` and their annotation zip(s)."""
    urls = {}
    for split in splits:
        m = re.fullmatch(r"(train|val)(\d{4})", split)
        if not m:
            raise ValueError(f"split must look like 'train2017' or 'val2017', got {split!r}")
        urls[f"{split}.zip"] = f"{base_url}/zips/{split}.zip"
        ann = f"annotations_trainval{m.group(2)}.zip"
        urls[ann] = f"{base_url}/annotations/{ann}"
    return urls


def file_digest(path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest, expected: str | None = None, progress: bool = True, timeout: float = 60.0,
          chunk_size: int = 1 << 20) -> str:
    """Download url to dest through dest.part, resuming a partial .part. Returns how the file was verified.

    expected: "md5:<hex>", "sha1:<hex>" or "sha256:<hex>". On a mismatch the file is moved to
    <dest>.corrupt (kept for inspection) and ValueError names the file and both digests.
    """
    if expected is not None and expected.partition(":")[0] not in ("md5", "sha1", "sha256"):
        raise ValueError(f"checksum for {url} must be 'md5:<hex>', 'sha1:<hex>' or 'sha256:<hex>', got {expected!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not offset:  # 416: the .part is not a prefix the server can continue
            raise OSError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from e
        part.unlink()
        offset, response = 0, urllib.request.urlopen(url, timeout=timeout)
    with response:
        if offset and response.status != 206:  # the server ignored Range and sends the whole file
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        content_md5 = response.headers.get("Content-MD5") if offset == 0 else None
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            try:
                for block in iter(lambda: response.read(chunk_size), b""):
                    f.write(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as e:  # connection lost: keep what arrived
                raise OSError(f"download of {url} interrupted ({e!r}); {part} is kept: run again to resume") from e
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"download of {url} stopped at {size} of {total} bytes; {part} is kept: "
                      f"run again to resume")

    source = ""
    if expected is None and content_md5:
        expected, source = "md5:" + base64.b64decode(content_md5).hex(), " (the server's Content-MD5 header)"
    if expected is None:
        part.replace(dest)
        return f"NOT verified: no checksum known (length {size} bytes checked)"
    algorithm, _, want = expected.partition(":")
    got = file_digest(part, algorithm)
    if got != want.lower():
        bad = dest.with_name(dest.name + ".corrupt")
        part.replace(bad)
        raise ValueError(f"checksum mismatch for {dest.name} from {url}: {algorithm} {got}, expected {want}; "
                         f"the file is kept as {bad}; delete it and run again")
    part.replace(dest)
    return f"{algorithm} verified{source}"


def extract(archive, root) -> list[str]:
    """Extract a zip into root, refusing members that would land outside it. Returns the member names."""
    root = Path(root).resolve()
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        for name in names:
            target = (root / name).resolve()
            if os.path.isabs(name) or not target.is_relative_to(root):
                raise ValueError(f"{archive}: member {name!r} would be extracted outside {root}")
        z.extractall(root)
    return names


def download_coco(root=None, splits=("train2017", "val2017"), base_url: str = COCO_URL, checksums=None,
                  keep_archives: bool = False, progress: bool = True) -> dict[str, str]:
    """Fetch, verify and extract the COCO archives of `splits` into root (None: `paths.coco_root()`).

    Afterwards root has the layout CocoDataset reads: root/annotations/instances_{split}.json, root/{split}/.
    checksums: {archive name: "algo:hex"}; None uses KNOWN_MD5 for the official base_url.
    keep_archives: keep the zips in root/downloads after extraction (default: delete them).
    Returns {archive name: how it was verified} ("already extracted" for archives done before).
    """
    root = paths.coco_root(root)
    downloads = root / "downloads"
    if checksums is None:
        checksums = KNOWN_MD5 if base_url.rstrip("/") == COCO_URL else {}
    report = {}
    for name, url in archive_urls(splits, base_url.rstrip("/")).items():
        done = downloads / f"{name}.done"
        if done.exists():
            report[name] = "already extracted"
            continue
        archive = downloads / name
        if archive.exists():  # fetched and verified by an earlier call that stopped before extracting
            report[name] = "verified by an earlier call"
        else:
            report[name] = fetch(url, archive, checksums.get(name), progress=progress)
            if name in checksums and checksums is KNOWN_MD5:
                report[name] += " (the MD5 quoted for the official archive)"
        extract(archive, root)
        done.write_text(f"{url}\n{report[name]}\n")
        if not keep_archives:
            archive.unlink()
    return report
