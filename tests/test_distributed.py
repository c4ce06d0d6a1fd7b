"""DistributedDataParallel through torchrun, on the CPU: 2 processes, gloo backend, 127.0.0.1.

The run goes through `training.train` exactly as `torchrun -m minimaskrcnn train` would (env:// from
torchrun's variables, a DistributedSampler share per process, rank-0-only logs and checkpoints).
Each process saves its final weights; after every step DDP's all-reduce gives both processes the
same averaged gradients, so the two replicas must end bit-identical.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

SCRIPT = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from test_training import ToyModel, shapes
from minimaskrcnn import training

torch.manual_seed(int(os.environ["RANK"]))  # different initial weights: DDP must broadcast rank 0's
cfg = training.TrainConfig(out={out!r}, iters=6, batch_size=2, lr=0.05, warmup_iters=0, log_every=2,
                         ckpt_every=3, progress=False, seed=1)
result = training.train(cfg, model=ToyModel(), train_set=shapes())
torch.save(result.model.state_dict(), os.path.join({out!r}, "rank" + os.environ["RANK"] + ".pt"))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_keep_identical_replicas(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(TESTS), out=str(tmp_path / "run"))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    run = tmp_path / "run"
    w0, w1 = (torch.load(run / f"rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]  # rank 0 alone writes the log
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["progress"]["step"] == 6 and len(last["rng"]) == 2  # both processes' generators
    assert all(torch.equal(last["model"][k], w0[k]) for k in w0)
    # 16 images, global batch 4: an epoch is 4 steps, so 6 steps end in the second epoch
    assert records[-1]["epoch"] == 1
