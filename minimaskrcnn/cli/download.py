"""`python -m minimaskrcnn download`: the official COCO archives (resumable, checksummed), and/or a subset of a
COCO root (data/download.py, data/subset.py do the work)."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import paths


def add_arguments(p) -> None:
    p.add_argument("--data", default=None, help="COCO root (default: $MINIMASKRCNN_COCO, else data/coco in a clone, "
                                                 "else $MINIMASKRCNN_HOME/coco or ~/.cache/minimaskrcnn/coco)")
    p.add_argument("--split", nargs="+", default=["train2017", "val2017"], help="splits to fetch")
    p.add_argument("--base-url", default=None, help="a mirror of http://images.cocodataset.org (same folders)")
    p.add_argument("--checksum", action="append", default=[], metavar="NAME=ALGO:HEX",
                   help="checksum of an archive, e.g. val2017.zip=md5:<hex> (repeatable; the 2017 MD5s are built in)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="accept archives without checking any checksum (not recommended)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a connection or a read may wait")
    p.add_argument("--keep-archives", action="store_true", help="keep the zip files after extracting")
    p.add_argument("--subset", default=None, metavar="ROOT", help="also write a subset COCO root here")
    p.add_argument("--num-images", type=int, default=None, help="subset: images per split")
    p.add_argument("--categories", nargs="+", default=None, help="subset: category names to keep")
    p.add_argument("--seed", type=int, default=0, help="subset: random seed of the image choice")
    p.add_argument("--link", default="copy", choices=["copy", "symlink", "hardlink"], help="subset: image files")


def check_arguments(args, root: Path) -> None:
    """The flags that can be 0 or empty, and a --subset that would write into its source, as one-line errors
    before anything is fetched or written."""
    from ..data.subset import check_outside_source

    if args.timeout <= 0:
        raise ValueError(f"--timeout must be a number of seconds > 0; got {args.timeout:g}")
    if args.base_url is not None and not args.base_url.strip():
        raise ValueError("--base-url is empty: name a mirror of http://images.cocodataset.org, or leave the flag out")
    if args.subset is None:
        given = [flag for flag, value in (("--num-images", args.num_images), ("--categories", args.categories))
                 if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} choose{'s' if len(given) == 1 else ''} the images of a "
                             f"subset: add --subset ROOT")
        return
    if not args.subset.strip():
        raise ValueError("--subset is empty: name the folder of the subset COCO root")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be an integer >= 1; got {args.num_images}")
    if args.categories is not None and not all(name.strip() for name in args.categories):
        raise ValueError(f"--categories holds an empty name: {args.categories}")
    check_outside_source(args.subset, root, "--subset ", "the source")
    for folder in ("annotations", *args.split):  # each may be a symlink into the source (DST/val2017 -> its val2017)
        check_outside_source(Path(args.subset) / folder, root, f"--subset {args.subset}: ", "the source")


def run(args) -> None:
    from ..data import download, subset

    root = paths.download_root(args.data)  # never into the shipped sample, nor beside an installed package
    check_arguments(args, root)
    if args.subset is None or paths.coco_root_problems(root, args.split):
        names = download.archive_urls(args.split)
        checksums = dict(download.KNOWN_MD5)
        for given in args.checksum:
            name, sep, value = given.partition("=")
            if not sep or name not in names:
                raise ValueError(f"--checksum {given!r}: expected NAME=ALGO:HEX with NAME one of {sorted(names)}")
            checksums[name] = "%s:%s" % download.parse_checksum(value, f"--checksum {name}")
        if not args.verify:
            print("WARNING: --no-verify: the archives are NOT checked against any checksum; a corrupt or "
                  "tampered file is only noticed if it fails to unzip", file=sys.stderr)
        kw = {"base_url": args.base_url} if args.base_url else {}
        report = download.download_coco(root, tuple(args.split), checksums=checksums, verify=args.verify,
                                        keep_archives=args.keep_archives, timeout=args.timeout, **kw)
        for name, how in report.items():
            print(f"{name}: {how}")
    if args.subset is not None:
        for split in args.split:
            info = subset.make_subset(paths.ann_file(root, split), paths.ann_file(args.subset, split),
                                      args.num_images, args.categories, args.seed, images_dir=root / split,
                                      out_images_dir=Path(args.subset) / split, link=args.link)
            print(f"{split}: {info['images']} images, {info['annotations']} annotations, "
                  f"{info['categories']} categories -> {info['out_file']}")
