"""Checkpoints: atomic saving, reading that says what is wrong with a file, and loading that says exactly
what does not fit. The floor that training, evaluation, predict and pretrained all stand on: it imports neither
`training/` nor the model (the model is imported inside `build_model_from_checkpoint` only).

A checkpoint is one `torch.save`d dict (`training.loop.Run.state` says what a training run puts in it):

    "model":        the model's state_dict
    "model_config": config.to_dict(ModelConfig), to rebuild the model (`build_model_from_checkpoint`)
    "optimizer", "scaler", "progress", "rng", "train_config": what a resumed run needs
    "data":         the data record of the run (data/sources.py RunData): what it trained and evaluates on
    "class_names", "label_to_cat_id": what predict and evaluate need to name classes and map them to COCO ids

    "checksum":     SHA-256 of everything above, tensors' bytes included (`content_checksum`)

Saving writes a temporary file in the destination folder and renames it over the target with
`os.replace`, which is atomic on POSIX and Windows: a crash or Ctrl-C mid-write leaves the previous
checkpoint intact, never a truncated one, and the temporary files of writers that were killed are removed
by the next save. The file gets the usual permissions (0666 less the umask), not the temporary file's 0600.
Everything stored is a tensor or a plain Python value, so loading uses `torch.load(weights_only=True)` and
never unpickles arbitrary objects; the checksum catches what the zip format does not, bits flipped inside
a tensor's data (a bad disk or copy), which would otherwise load silently.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from . import config as config_lib


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically, with the checksum of its tensors; returns the path."""
    state = {**state, "checksum": content_checksum(state)}
    return write_atomically(path, lambda f: torch.save(state, f))


def write_atomically(path: str | os.PathLike, write) -> Path:
    """Call write(f) on a temp file beside `path`, then rename it onto `path`: a reader sees the old file or the
    new one, never half of one. The file gets the umask's mode, and temp files of `path` that killed writers
    left behind are removed. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temp file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed mid-write
        stale.unlink(missing_ok=True)
    return path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def content_checksum(state: dict) -> str:
    """SHA-256 of a checkpoint's content, the "checksum" entry left out: every value in key order, each tensor
    as its name, dtype, shape and raw bytes, each plain value as its repr."""
    digest = hashlib.sha256()

    def walk(name: str, value) -> None:
        if torch.is_tensor(value):
            t = value.detach().cpu().contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(f"{name}/{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{name}/{i}", item)
        else:
            digest.update(f"{name}={value!r};".encode())

    walk("", {k: v for k, v in state.items() if k != "checksum"})
    return digest.hexdigest()


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a checkpoint file atomically (e.g. last.pt -> best.pt); returns dst."""
    with open(src, "rb") as source:
        return write_atomically(dst, lambda f: shutil.copyfileobj(source, f))


def torch_load(path: str | os.PathLike, what: str = "checkpoint", map_location="cpu"):
    """torch.load(path, weights_only=True), with one-line errors naming the file: FileNotFoundError when it is
    missing, ValueError when it is truncated, corrupt or holds more than tensors and plain values. `what` names
    the file in the message ("checkpoint", "weights file")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip reader errors, EOFError, UnpicklingError...: all mean "unreadable"
        # (not torch's own text: for a file that is not weights-only it advises weights_only=False, i.e. running
        # whatever code the file holds)
        raise ValueError(f"{what} {path} is corrupt or truncated, or not a {what} of tensors and plain values, "
                         f"and cannot be read ({type(e).__name__})") from e


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The raw checkpoint dict. FileNotFoundError / ValueError naming the file when it is missing,
    truncated, corrupt or not a minimaskrcnn checkpoint."""
    state = torch_load(path, "checkpoint", map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {path} is not a minimaskrcnn checkpoint (no 'model' entry)")
    if "checksum" in state and content_checksum(state) != state["checksum"]:
        raise ValueError(f"checkpoint {path} is corrupt: its content no longer matches the checksum written with "
                         f"it (changed on disk or in a copy); use another checkpoint, e.g. best.pt")
    return state


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Fields that differ between two nested config dicts, as "field: a_value != b_value" lines."""
    lines = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            lines += config_differences(va, vb, prefix=f"{name}.")
        elif _plain(va) != _plain(vb):
            lines.append(f"{name}: {va!r} != {vb!r}")
    return lines


def _plain(v):
    """Lists and tuples compare equal (a config that went through JSON has lists)."""
    return tuple(_plain(x) for x in v) if isinstance(v, (list, tuple)) else v


def state_dict_differences(stored: dict, expected: dict) -> list[str]:
    """Keys missing from / unexpected in `stored`, and shape mismatches, against `expected`."""
    # shape mismatches first: they are the most telling (another num_classes, another width)
    lines = [f"shape mismatch {k}: checkpoint {tuple(stored[k].shape)} != model {tuple(expected[k].shape)}"
             for k in expected if k in stored and stored[k].shape != expected[k].shape]
    lines += [f"missing key {k} (model shape {tuple(expected[k].shape)})" for k in expected if k not in stored]
    lines += [f"unexpected key {k} (checkpoint shape {tuple(stored[k].shape)})" for k in stored if k not in expected]
    return lines


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, model_config=None, optimizer=None,
                    scaler=None, map_location="cpu") -> dict:
    """Load weights (and optionally optimizer / GradScaler state) from `path` into `model`.

    model_config: the model's ModelConfig (default: `model.config` when the model has one). It is
    compared with the config stored in the checkpoint. When the weights do not fit the model, a
    ValueError lists every missing / unexpected key and shape mismatch, and the differing config
    fields; when only fields that hold no weights differ (e.g. transform.min_size), a warning lists them.
    Returns the whole checkpoint dict (progress, rng, train_config, data, ... for resuming).
    """
    state = read_checkpoint(path, map_location)
    apply_checkpoint(state, model, model_config, optimizer, scaler, source=path)
    return state


def apply_checkpoint(state: dict, model: torch.nn.Module, model_config=None, optimizer=None, scaler=None,
                     source="checkpoint") -> None:
    """The checking-and-loading part of `load_checkpoint`, for a checkpoint dict already read."""
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper holds the model
    model_config = model_config if model_config is not None else getattr(model, "config", None)
    config_lines = []
    if model_config is not None and state.get("model_config") is not None:
        ours = model_config if isinstance(model_config, dict) else config_lib.to_dict(model_config)
        config_lines = config_differences(state["model_config"], ours)

    weight_lines = state_dict_differences(state["model"], model.state_dict())
    if weight_lines:
        msg = [f"checkpoint {source} does not fit the model: {len(weight_lines)} state_dict mismatch(es)"]
        msg += ["  " + line for line in weight_lines[:50]]
        if len(weight_lines) > 50:
            msg.append(f"  ... and {len(weight_lines) - 50} more")
        if config_lines:
            msg.append("config fields that differ (checkpoint != model):")
            msg += ["  " + line for line in config_lines]
        raise ValueError("\n".join(msg))
    if config_lines:
        warnings.warn(f"checkpoint {source} was saved with a different config (weights fit): "
                      + "; ".join(config_lines))

    model.load_state_dict(state["model"])
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"checkpoint {source} holds no optimizer state; cannot resume training from it")
        optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])


def build_model_from_checkpoint(path: str | os.PathLike, map_location="cpu", **config_overrides):
    """(model, checkpoint dict): a MaskRCNN built from the config stored in `path`, with its weights.

    config_overrides: `section={field: value}` replacements applied to the stored config before
    building, for fields that hold no weights, e.g. transform={"min_size": 600}.
    """
    from .model import MaskRCNN  # imported here so checkpoint.py stays usable without the model

    state = read_checkpoint(path, map_location)
    if state.get("model_config") is None:
        raise ValueError(f"checkpoint {path} stores no model_config; build the model yourself and call "
                         f"load_checkpoint(path, model)")
    model_config = config_lib.from_dict(with_overrides(state["model_config"], config_overrides))
    model = MaskRCNN(model_config)
    apply_checkpoint(state, model, model_config, source=path)
    return model, state


def with_overrides(config: dict, overrides: dict) -> dict:
    """A config dict (config.to_dict) with `section={field: value}` overrides applied, for fields that hold no
    weights (e.g. {"transform": {"min_size": 600}}); ValueError naming an unknown section or field."""
    for section, fields in overrides.items():
        if section not in config or not isinstance(config[section], dict):
            raise ValueError(f"unknown config section {section!r}")
        unknown = set(fields) - set(config[section])
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in config section {section!r}")
        config = {**config, section: {**config[section], **fields}}
    return config
