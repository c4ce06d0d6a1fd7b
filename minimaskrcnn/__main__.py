"""`python -m minimaskrcnn ...`: see cli.py."""
from .cli import main

raise SystemExit(main())
