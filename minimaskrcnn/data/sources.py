"""Which data a run trains and is evaluated on: one record, `RunData`, that TrainConfig.data holds, every
checkpoint stores, and `build` turns into datasets (for training, `--resume` and `evaluate` alike).

A RunData is a training set and a held-out set (None: no evaluation), each described by a small record:

    Shapes(num_images=2000, image_size=128, seed=0)      the synthetic shapes (data/shapes.py; keypoints=True: with
                                                         their keypoints, Sec. 5; kinds=("star", "ring", "cross"):
                                                         other classes)
    CocoFiles(annotations="/abs/labels.json", images="/abs/images")
                                                         a COCO-format JSON and its image folder: your own export
                                                         (a CVAT, Labelme, Roboflow one), or a split of COCO
    Custom(name="MyDataset(...)")                        a dataset object given to train(): named, not rebuildable

RunData.shapes(), .coco() and .files() make one as the command line's flags name it; `describe` makes the record
of a dataset object, with absolute paths (a record outlives the folder it was written from). In a checkpoint,
under "data", it is plain values (checkpoints load with weights_only=True):

    {"train": {"kind": "shapes", "num_images": 2000, "image_size": 128, "seed": 0},
     "val":   {"kind": "shapes", "num_images": 200, "image_size": 128, "seed": 1}}

Whatever else comes to describe a dataset (a hash of its file, its image count, its categories) is a field with a
default added to its record: `from_dict` fills in what an older checkpoint lacks and ignores what it does not know.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Union

from .. import paths
from ..config import check_number
from .coco import CocoDataset
from .shapes import DEFAULT_KINDS, ShapesDataset, check_kinds


@dataclass(frozen=True)
class Shapes:
    """The synthetic shapes: `num_images` images of image_size x image_size pixels, drawn with `seed`."""
    num_images: int = 2000
    image_size: int = 128  # side, pixels
    seed: int = 0  # the images' generator; a run's held-out shapes use the training seed + 1 (`held_out`)
    keypoints: bool = False  # with keypoints (corners, vertices, extreme points: data/shapes.py), Sec. 5
    kinds: tuple = DEFAULT_KINDS  # the shapes drawn, class k = kinds[k - 1] (shapes.KINDS: also star, ring, cross)
    kind: ClassVar[str] = "shapes"

    def __post_init__(self):
        try:  # a list from a stored record, or "star,ring,cross" from a flag, as a tuple of known names
            object.__setattr__(self, "kinds", check_kinds(self.kinds))
        except ValueError as e:
            raise ValueError(f"Shapes.kinds: {e}") from None
        check_number("Shapes", "num_images", self.num_images, 1, integer=True)
        check_number("Shapes", "image_size", self.image_size, 16, integer=True)
        check_number("Shapes", "seed", self.seed, 0, integer=True)

    def held_out(self, num_images: int) -> Shapes | None:
        """The held-out set of a run trained on these shapes: `num_images` others of the same size, drawn with
        the next seed (None for 0: no held-out set)."""
        check_number("Shapes.held_out", "num_images", num_images, 0, integer=True)
        return dataclasses.replace(self, num_images=num_images, seed=self.seed + 1) if num_images else None


@dataclass(frozen=True)
class CocoFiles:
    """A COCO-format JSON and the folder its images' file_names are relative to, and what the JSON held when a run
    read it (its fingerprint, recorded by `describe`): `train --resume` refuses a file that changed since
    (`check_unchanged`). A record made from flags, or stored before fingerprints were, has none (None)."""
    annotations: str
    images: str
    sha256: str | None = None  # of the JSON file's bytes
    num_images: int | None = None  # images it lists
    categories: tuple | None = None  # its category names, in label order
    kind: ClassVar[str] = "coco"

    def __post_init__(self):
        if self.categories is not None:  # a checkpoint gives back a list
            object.__setattr__(self, "categories", tuple(self.categories))


@dataclass(frozen=True)
class Custom:
    """A dataset object given to train(), which only its own code can build again."""
    name: str  # its repr, for the messages
    kind: ClassVar[str] = "custom"


Source = Union[Shapes, CocoFiles, Custom]
KINDS = {cls.kind: cls for cls in (Shapes, CocoFiles, Custom)}


def coco_split(root, split: str) -> CocoFiles:
    """Split `split` of a COCO root in the official layout (root None: the default one, `paths.coco_root`)."""
    root = paths.coco_root(root)
    return CocoFiles(str(paths.ann_file(root, split)), str(root / split))


@dataclass(frozen=True)
class RunData:
    """What a run trains on, and the held-out set it is evaluated on (None: no evaluation)."""
    train: Source
    val: Source | None = None

    @classmethod
    def shapes(cls, num_images: int = 2000, num_val_images: int = 200, image_size: int = 128,
               seed: int = 0, keypoints: bool = False, kinds=DEFAULT_KINDS) -> RunData:
        """The synthetic shapes, and `num_val_images` held-out ones (0: none); kinds: the shapes drawn."""
        train = Shapes(num_images, image_size, seed, keypoints, kinds)
        return cls(train, train.held_out(num_val_images))

    @classmethod
    def coco(cls, root=None, split: str = "train2017", val_split: str | None = "val2017") -> RunData:
        """Splits of a COCO root (None: the default one); val_split None: no held-out set."""
        return cls(coco_split(root, split), coco_split(root, val_split) if val_split else None)

    @classmethod
    def files(cls, annotations, images, val_annotations=None, val_images=None) -> RunData:
        """Your own COCO-format data: a JSON and its image folder, and a held-out pair if you have one."""
        for a, b in ((annotations, images), (val_annotations, val_images)):
            if (a is None) != (b is None):
                raise ValueError("annotations and images go together: a COCO-format JSON and its image folder")
        val = CocoFiles(str(val_annotations), str(val_images)) if val_annotations is not None else None
        return cls(CocoFiles(str(annotations), str(images)), val)

    def to_dict(self) -> dict:
        """The record as a checkpoint stores it: plain values."""
        return {"train": source_to_dict(self.train), "val": source_to_dict(self.val)}

    @classmethod
    def from_dict(cls, record: dict) -> RunData:
        return cls(source_from_dict(record["train"]), source_from_dict(record.get("val")))


def source_to_dict(source: Source | None) -> dict | None:
    return None if source is None else {"kind": source.kind, **dataclasses.asdict(source)}


def source_from_dict(record: dict | None) -> Source | None:
    """A record's dict back as its type: fields it lacks take their defaults, keys the type lacks are left out."""
    if record is None:
        return None
    if record.get("kind") not in KINDS:
        raise ValueError(f"unknown kind of data record {record.get('kind')!r}; known: {', '.join(KINDS)}")
    cls = KINDS[record["kind"]]
    return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})


def describe(dataset) -> Source | None:
    """The record of a dataset object (None for None)."""
    if dataset is None:
        return None
    if isinstance(dataset, CocoDataset):
        return CocoFiles(str(Path(dataset.ann_file).resolve()), str(Path(dataset.image_dir).resolve()),
                         file_sha256(dataset.ann_file), len(dataset.coco.imgs), tuple(dataset.class_names[1:]))
    if isinstance(dataset, ShapesDataset):
        return Shapes(dataset.num_images, dataset.image_size, dataset.seed, dataset.keypoints, dataset.kinds)
    return Custom(repr(dataset)[:200])


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MB blocks (COCO's train2017 JSON: 448 MB, about a second)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_unchanged(recorded: RunData, now: RunData, checkpoint) -> None:
    """ValueError naming what changed when a COCO-format file the checkpoint's run read has changed since: its
    category names (the labels would now mean other classes), its image count, or its bytes. Files read under
    another path, and records without a fingerprint (older checkpoints), are not compared."""
    for role, was, is_ in (("training", recorded.train, now.train), ("held-out", recorded.val, now.val)):
        if not (isinstance(was, CocoFiles) and isinstance(is_, CocoFiles) and was.sha256 and is_.sha256
                and Path(was.annotations) == Path(is_.annotations) and was.sha256 != is_.sha256):
            continue
        if was.categories != is_.categories:
            change = f"its categories are now {list(is_.categories)[:6]}... (were {list(was.categories)[:6]}...)"
        elif was.num_images != is_.num_images:
            change = f"it now lists {is_.num_images} images (was {was.num_images})"
        else:
            change = "its contents differ (SHA-256)"
        raise ValueError(f"the {role} file {is_.annotations} changed since {checkpoint} was saved: {change}; resume "
                         f"on the data it trained on, or start a new run with another --out")


def check_same_classes(dataset, class_names, num_classes: int, trained_on: str) -> None:
    """ValueError unless `dataset` has `class_names` (background first; None: only `num_classes` is known) in the
    same order: a model trained with one label mapping, scored on another, would be scored on the wrong classes.
    `evaluate` (a checkpoint against its data) and `train` (the training set against --val-annotations) both
    say it in these words; trained_on: e.g. "checkpoint last.pt was trained on"."""
    if dataset.num_classes != num_classes or (class_names and list(class_names) != list(dataset.class_names)):
        raise ValueError(f"{trained_on} {num_classes - 1} classes {list(class_names or [])[1:6]}..., the dataset "
                         f"{dataset} has {dataset.num_classes - 1} {dataset.class_names[1:6]}...")


def build(source: Source, transforms=None, skip_empty: bool = False):
    """The dataset a record describes; ValueError for a Custom one. transforms: the augmentation (training
    only); skip_empty: leave out COCO images without objects (training only, as detectron2 does)."""
    if isinstance(source, CocoFiles):
        return CocoDataset(ann_file=source.annotations, image_dir=source.images, skip_empty=skip_empty,
                           transforms=transforms)
    if isinstance(source, Shapes):
        return ShapesDataset(source.num_images, source.image_size, seed=source.seed, transforms=transforms,
                             keypoints=source.keypoints, kinds=source.kinds)
    raise ValueError(f"the data {source.name} cannot be built from its record (a dataset object given to train() "
                     f"can only be given again, train(..., train_set=...)): name the data, with --data or "
                     f"--annotations and --images")


def evaluation_set(state: dict, checkpoint, annotations=None, images=None, data=None, split: str = "val2017",
                   num_images: int = 200):
    """The dataset `evaluate` scores a checkpoint (its dict `state`) on: `annotations` with `images` (a COCO-format
    JSON and its folder), else `data` ("shapes": held-out shapes of the size and seed the run trained on; or a
    COCO root and its `split`), else the held-out set recorded in the checkpoint, else a one-line error saying
    how to name one."""
    if (annotations is None) != (images is None):
        raise ValueError("--annotations and --images go together: a COCO-format JSON and its image folder")
    if annotations is not None:
        return build(CocoFiles(annotations, images))
    recorded = RunData.from_dict(state["data"]) if state.get("data") else None
    if data == "shapes":  # with keypoints when the checkpoint's model predicts them
        trained = recorded.train if recorded is not None and isinstance(recorded.train, Shapes) else Shapes()
        keypoints = bool(((state.get("model_config") or {}).get("roi_heads") or {}).get("num_keypoints"))
        held_out = dataclasses.replace(trained, keypoints=keypoints).held_out(num_images)
        if held_out is None:
            raise ValueError("--num-images must be at least 1 to evaluate on held-out shapes")
        return build(held_out)
    if data is not None:
        return build(coco_split(data, split))
    if recorded is not None and recorded.val is not None:
        return build(recorded.val)
    raise ValueError(f"checkpoint {checkpoint} records no held-out set: name the data to evaluate on with "
                     f"--annotations and --images, or --data (and --split)")
