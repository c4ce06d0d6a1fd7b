"""`python -m minimaskrcnn ...`: see cli.py."""
import os

# Before torch loads OpenMP: threads that wait for work sleep instead of spinning. On a laptop whose
# cores are also busy with other programs, spinning threads steal each other's time slices, and a
# training step on 2 threads ran 3x slower than on 1 (2.8 s vs 0.9 s per step with PASSIVE, measured
# on a 2-core machine under load); idle machines lose nothing measurable. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402  (after the environment is set)

raise SystemExit(main())
