"""Download the official COCO images and annotations: resumable, checksum-verified, then extracted.

    download_coco("data/coco", splits=("val2017",))   # -> data/coco/val2017/, data/coco/annotations/

Each archive is fetched into root/downloads/<name>.part. An interrupted download keeps its .part file and
the next call continues it with an HTTP Range request (a server that ignores Range sends the whole file
again, and the .part is restarted; a .part that is complete already is checked as it is). A finished
archive is checked, then extracted into root; a marker root/downloads/<name>.done makes later calls skip
it. A file that fails its check (a corrupt .part, an archive that is not a valid zip) is moved aside to
<name>.corrupt, so that the next call starts afresh.

Checksums, honestly: cocodataset.org publishes none. KNOWN_MD5 holds the MD5s that independent
projects (MLPerf's Mask R-CNN download script, PaddleDetection, several dataset loaders) quote
identically for the official 2017 archives; a mirror (`base_url`) serves the same files, so they
apply there too. For other files pass `checksums` ({archive name: "md5:<hex>" | "sha1:<hex>" |
"sha256:<hex>"}, in place of the table); failing that, a Content-MD5 header from the server is used;
failing both, the download is refused unless verify=False (the CLI's --no-verify) says explicitly that
an unverified file is acceptable.

`fetch` is also how `pretrained.py` downloads torchvision's weights: a checksum may be a prefix of the
digest (at least 8 hex digits), as in torch.hub's file names "<name>-<first hex digits of SHA-256>.pth".

Every failure outside this program (HTTP error, refused connection, unknown host, timeout, a connection
dropped mid-file) is a one-line `DownloadError` naming the URL and what to do.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from .. import paths

COCO_URL = "http://images.cocodataset.org"
KNOWN_MD5 = {  # in the "algorithm:hex" form that fetch() checks
    "train2017.zip": "md5:cced6f7f71b7629ddf16f17bbcfab6b2",  # 18 GB
    "val2017.zip": "md5:442b8da7639aecaf257c1dceb8ba8c80",  # 778 MB
    "annotations_trainval2017.zip": "md5:f4bbac642086de4f52a3fdda2de5fa2c",  # 241 MB
}
DIGEST_HEX_DIGITS = {"md5": 32, "sha1": 40, "sha256": 64}
MIN_PREFIX = 8  # hex digits; torch.hub names its files with the first 8 or more of the SHA-256


class DownloadError(OSError):
    """A download failed for a reason outside this program (network, server); the message is one line
    naming the URL and what to do."""


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


def parse_checksum(checksum: str, what: str = "checksum") -> tuple[str, str]:
    """"md5:<hex>" | "sha1:<hex>" | "sha256:<hex>" -> (algorithm, lower-case hex).

    The hex is the whole digest or a prefix of at least MIN_PREFIX digits. ValueError names `what`."""
    algorithm, sep, hex_ = str(checksum).partition(":")
    full = DIGEST_HEX_DIGITS.get(algorithm.lower())
    if not sep or full is None or not re.fullmatch(r"[0-9a-fA-F]+", hex_) or not MIN_PREFIX <= len(hex_) <= full:
        raise ValueError(f"{what} must be 'md5:<32 hex>', 'sha1:<40 hex>' or 'sha256:<64 hex>' (or at least "
                         f"{MIN_PREFIX} leading hex digits), got {checksum!r}")
    return algorithm.lower(), hex_.lower()


def file_digest(path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _network_error(url: str, reason, timeout: float) -> DownloadError:
    """The one-line error for a failure to reach `url`; `reason` is the exception (or text) urllib gave."""
    host = urllib.parse.urlsplit(url).hostname
    if isinstance(reason, socket.gaierror):
        what = f"the host name {host!r} cannot be resolved; check the address and your network connection"
    elif isinstance(reason, ConnectionRefusedError):
        what = f"{host} refused the connection; check the address and port, and that the server is running"
    elif isinstance(reason, TimeoutError):
        what = f"no answer within {timeout:g} s; try again later, or allow a longer timeout"
    else:
        what = f"{reason}; check the address and your network connection, then run again"
    return DownloadError(f"cannot download {url}: {what}")


def _open(url: str, timeout: float, offset: int = 0):
    """(response, None), or (None, total size or None) when the server answers 416 (Range Not Satisfiable)
    to a request for the bytes from `offset` on. Other failures raise DownloadError."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout), None
    except urllib.error.HTTPError as e:  # an HTTPError is also a URLError: handled first
        e.close()
        if e.code == 416 and offset:
            m = re.fullmatch(r"bytes \*/(\d+)", e.headers.get("Content-Range", ""))
            return None, int(m.group(1)) if m else None
        advice = "check the address (a mirror's --base-url)" if e.code in (403, 404, 410) else "try again later"
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}; {advice}") from e
    except urllib.error.URLError as e:
        raise _network_error(url, e.reason, timeout) from e
    except (OSError, http.client.HTTPException) as e:  # e.g. a timeout while waiting for the headers
        raise _network_error(url, e, timeout) from e


def _copy(response, part: Path, offset: int, total, url: str, timeout: float, progress: bool, chunk_size: int):
    """Append the response body to `part` (from scratch when offset is 0), keeping what arrived on failure."""
    with open(part, "ab" if offset else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.stem, disable=not progress) as bar:
        try:
            for block in iter(lambda: response.read(chunk_size), b""):
                f.write(block)
                bar.update(len(block))
        except TimeoutError as e:
            raise DownloadError(f"download of {url} stalled (no data for {timeout:g} s); {part} is kept: "
                                f"run again to resume") from e
        except (OSError, http.client.HTTPException) as e:  # connection lost (or the disk is full)
            raise DownloadError(f"download of {url} interrupted ({getattr(e, 'strerror', None) or type(e).__name__}"
                                f"); {part} is kept: run again to resume") from e


def _no_checksum(dest: Path, url: str) -> ValueError:
    return ValueError(f"no checksum is known for {dest.name} ({url}) and the server sends none: give one "
                      f"(--checksum {dest.name}=md5:<hex>) or skip verification explicitly (--no-verify)")


def fetch(url: str, dest, expected: str | None = None, progress: bool = True, timeout: float = 60.0,
          chunk_size: int = 1 << 20, verify: bool = True) -> str:
    """Download url to dest through dest.part, resuming a partial .part. Returns how the file was verified.

    expected: "md5:<hex>", "sha1:<hex>" or "sha256:<hex>" (or a prefix of the hex, >= 8 digits). None: the
    server's Content-MD5 header, and without one a ValueError before any byte is fetched, unless
    verify=False, which skips every check but the length. On a mismatch the file is moved to <dest>.corrupt
    (the next call starts afresh) and ValueError names the URL and both digests.
    timeout: seconds a connection or a read may wait. Network failures raise DownloadError (an OSError).
    """
    if expected is not None:
        expected = "%s:%s" % parse_checksum(expected, f"the checksum for {url}")
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot download {url} into {dest.parent}: {e.strerror or e}; choose another "
                            f"folder") from e
    part = dest.with_name(dest.name + ".part")
    header_md5 = dest.with_name(dest.name + ".part.md5")  # the server's Content-MD5, kept for a resume
    offset = part.stat().st_size if part.exists() else 0
    response, total = _open(url, timeout, offset)
    if response is None and total != offset:  # the .part is no prefix the server can continue: restart
        part.unlink()
        offset, (response, total) = 0, _open(url, timeout)
    if response is not None:  # else: the .part is complete already (an earlier call stopped before checking)
        with response:
            if offset and response.status != 206:  # the server ignored Range and sends the whole file
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            if offset == 0:
                header_md5.unlink(missing_ok=True)
                if response.headers.get("Content-MD5"):
                    header_md5.write_text(base64.b64decode(response.headers["Content-MD5"]).hex())
            if verify and expected is None and not header_md5.exists():
                raise _no_checksum(dest, url)  # before a single byte is fetched
            _copy(response, part, offset, total, url, timeout, progress, chunk_size)
    elif verify and expected is None and not header_md5.exists():
        raise _no_checksum(dest, url)
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"download of {url} stopped at {size} of {total} bytes; {part} is kept: "
                            f"run again to resume")

    source = ""
    if expected is None and header_md5.exists():
        expected, source = "md5:" + header_md5.read_text().strip(), " (the server's Content-MD5 header)"
    header_md5.unlink(missing_ok=True)
    if not verify or expected is None:
        part.replace(dest)
        return f"NOT verified: verification turned off (only the length, {size} bytes, checked)"
    algorithm, _, want = expected.partition(":")
    got = file_digest(part, algorithm)
    if not got.startswith(want):
        bad = dest.with_name(dest.name + ".corrupt")
        part.replace(bad)
        raise ValueError(f"checksum mismatch for {dest.name} from {url}: {algorithm} {got}, expected {want}; "
                         f"moved to {bad}: run again to download afresh (if it fails again, the server's "
                         f"file is not the one the checksum describes)")
    prefix = f" (its first {len(want)} hex digits)" if len(want) < DIGEST_HEX_DIGITS[algorithm] else ""
    part.replace(dest)
    return f"{algorithm} verified{prefix}{source}"


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


def _reuse(archive: Path, url: str, expected: str | None, verify: bool) -> str:
    """Check an archive that an earlier call fetched but did not extract (it stopped, or failed, before)."""
    if not verify or expected is None:
        return "NOT verified: left by an earlier call"
    algorithm, want = parse_checksum(expected, f"the checksum for {archive.name}")
    got = file_digest(archive, algorithm)
    if not got.startswith(want):
        bad = archive.with_name(archive.name + ".corrupt")
        archive.replace(bad)
        raise ValueError(f"checksum mismatch for {archive} (left by an earlier call from {url}): {algorithm} "
                         f"{got}, expected {want}; moved to {bad}: run again to download afresh")
    return f"{algorithm} verified (left by an earlier call)"


def download_coco(root=None, splits=("train2017", "val2017"), base_url: str = COCO_URL, checksums=None,
                  verify: bool = True, keep_archives: bool = False, progress: bool = True,
                  timeout: float = 60.0) -> dict[str, str]:
    """Fetch, verify and extract the COCO archives of `splits` into root (None: `paths.download_root()`: data/coco
    in a clone, else the user's data folder, unless MINIMASKRCNN_COCO says otherwise; never the shipped sample).

    Afterwards root has the layout CocoDataset reads: root/annotations/instances_{split}.json, root/{split}/.
    base_url: the official server or a mirror with the same folders (zips/, annotations/).
    checksums: {archive name: "algo:hex"}; None: KNOWN_MD5 (the official 2017 archives, on any base_url).
    verify=False: accept files without checking them (the CLI's --no-verify; the report says so).
    keep_archives: keep the zips in root/downloads after extraction (default: delete them).
    Returns {archive name: how it was verified} ("already extracted" for archives done before).
    """
    root = paths.download_root(root)
    downloads = root / "downloads"
    checksums = KNOWN_MD5 if checksums is None else checksums
    report = {}
    for name, url in archive_urls(splits, base_url.rstrip("/")).items():
        done = downloads / f"{name}.done"
        if done.exists():
            report[name] = "already extracted"
            continue
        archive = downloads / name
        if archive.exists():
            report[name] = _reuse(archive, url, checksums.get(name), verify)
        else:
            report[name] = fetch(url, archive, checksums.get(name), progress, timeout, verify=verify)
            if verify and name in KNOWN_MD5 and checksums.get(name) == KNOWN_MD5[name]:
                report[name] += " (the MD5 quoted for the official archive)"
        try:
            extract(archive, root)
        except (zipfile.BadZipFile, EOFError) as e:  # e.g. an HTML error page saved under --no-verify
            bad = archive.with_name(archive.name + ".corrupt")
            archive.replace(bad)
            raise ValueError(f"{archive} from {url} is not a valid zip ({e}); moved to {bad}: run again to "
                             f"download afresh") from e
        done.write_text(f"{url}\n{report[name]}\n")
        if not keep_archives:
            archive.unlink()
    return report
