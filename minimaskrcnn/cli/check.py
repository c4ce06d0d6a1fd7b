"""`python -m minimaskrcnn check COMPONENT FILE.py`: the implement-it-yourself checks (exercises/) on the
functions of your own file, as notebook 09 runs them."""
from __future__ import annotations

from ..exercises import COMPONENTS, check_file, get_component


def add_arguments(p) -> None:
    p.add_argument("component", nargs="?", help=f"one of {', '.join(COMPONENTS)}, or 'all'")
    p.add_argument("file", nargs="?", help="your Python file, e.g. my_ops.py, defining the component's function(s)")
    p.add_argument("--list", action="store_true", help="list the components and the functions each one checks")


def run(args) -> None:
    """`python -m minimaskrcnn check COMPONENT FILE.py`: exit status 0 when every property passes, 1 when one
    fails, 2 for a usage error (ValueError / FileNotFoundError, printed as one line by cli.main)."""
    if args.list:
        for c in COMPONENTS.values():
            print(f"{c.name:13s} {', '.join(c.functions):27s} {len(c.properties):2d} properties: {c.title}")
        return
    if not args.component or not args.file:
        raise ValueError("check needs a component and a file: python -m minimaskrcnn check COMPONENT FILE.py "
                         "(--list shows the components)")
    if args.component != "all":
        get_component(args.component)  # an unknown name is a usage error before the file is imported
    if not check_file(args.component, args.file):
        raise SystemExit(1)
