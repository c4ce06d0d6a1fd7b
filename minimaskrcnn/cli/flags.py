"""Flags that several commands share."""
from __future__ import annotations


def add_model_flags(p) -> None:
    """How a loaded model runs (evaluate, predict): batch, device, and the image size it was trained at."""
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--min-size", type=int, default=None, help="override the checkpoint's transform.min_size")
    p.add_argument("--max-size", type=int, default=None, help="override the checkpoint's transform.max_size")


def check_flag(flag: str, value, low, high=None, integer: bool = True) -> None:
    """ValueError "--flag must be an integer >= low; got value" (TrainConfig's words) unless low <= value <= high;
    NaN is refused too. For the flags that can be given 0, negative or out of range."""
    if not (value >= low and (high is None or value <= high)):
        bounds = f">= {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"{flag} must be {'an integer' if integer else 'a number'} {bounds}; got {value!r}")


def check_not_empty(flag: str, value: str, what: str) -> None:
    """ValueError when a path or name flag is given as '' (a Path('') would be the current folder)."""
    if not str(value).strip():
        raise ValueError(f"{flag} is empty: name {what}")


def check_none_empty(args, flags: dict) -> None:
    """check_not_empty for every flag given (flag -> its argparse dest): '' would otherwise mean the current
    folder (a path), or quietly the default (--data, --config, --resume, an --out whose default is computed)."""
    for flag, dest in flags.items():
        value = getattr(args, dest, None)
        if value is not None and not str(value).strip():
            raise ValueError(f"{flag} is empty: give a value, or leave the flag out")


def model_flags_in_flag_terms(e: ValueError) -> ValueError:
    """"TransformConfig.min_size must be ..." -> "--min-size must be ...": the message in what the user typed."""
    message = str(e).replace("TransformConfig.min_size ", "--min-size ").replace("TransformConfig.max_size ",
                                                                                 "--max-size ")
    return ValueError(message)
