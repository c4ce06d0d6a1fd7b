"""The package as `pip install` gives it (Colab, another project), not as a clone runs it: the wheel is built
offline, installed with --no-deps into a fresh virtual environment that sees this environment's packages (torch is
not downloaded again), and used from an empty folder with PYTHONPATH unset: `train` on the COCO sample shipped in
the wheel, `evaluate`, `predict` on a sample photo, `check --list` through the installed `minimaskrcnn` script, and
`download` from a local server into the user's data folder. Nothing may be written beside site-packages.

Before, the sample was not in the wheel ("annotation file .../site-packages/../data/coco_sample/... does not
exist") and `download` wrote COCO into a data/ folder beside site-packages."""
import hashlib
import http.server
import io
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import local_http
from minimaskrcnn.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def build_wheel(tmp_path) -> Path:
    """The wheel of a copy of the project's sources (the build's build/ and egg-info stay out of the clone)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "minimaskrcnn", src / "minimaskrcnn", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp_path / "dist")], cwd=src, check=True, capture_output=True)
    return next((tmp_path / "dist").glob("minimaskrcnn-*.whl"))


def fresh_venv(tmp_path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed (no dependencies) and, after its own site-packages,
    this environment's (a .pth line adds the folder only: its editable install of the clone stays inactive)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True)
    own = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip())
    (own / "this_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def tiny_coco_archives() -> dict:
    """{URL path: bytes} of a val2017 with one 32 x 32 image and its annotations, zipped as COCO serves them."""
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(buf, "JPEG")
    ann = {"images": [{"id": 1, "file_name": "000000000001.jpg", "height": 32, "width": 32}],
           "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    archives = {}
    for path, members in (("/zips/val2017.zip", {"val2017/000000000001.jpg": buf.getvalue()}),
                          ("/annotations/annotations_trainval2017.zip",
                           {"annotations/instances_val2017.json": json.dumps(ann)})):
        z = io.BytesIO()
        with zipfile.ZipFile(z, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        archives[path] = z.getvalue()
    return archives


def test_the_wheel_installed_elsewhere_trains_evaluates_predicts_checks_and_downloads(tmp_path):
    venv = fresh_venv(tmp_path, build_wheel(tmp_path))
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    sample = site_packages / "minimaskrcnn" / "data" / "coco_sample"
    assert (sample / "README.md").is_file() and len(list(sample.glob("*2017/*.jpg"))) == 44  # shipped in the wheel
    work, home = tmp_path / "elsewhere", tmp_path / "home"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("MINIMASKRCNN_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), MPLBACKEND="Agg")

    def run(*argv, script=False) -> str:
        """`python -m minimaskrcnn ARGV` (or the installed script `minimaskrcnn ARGV`) in the empty folder."""
        command = [str(venv / "bin" / "minimaskrcnn")] if script else [str(venv / "bin" / "python"), "-m",
                                                                         "minimaskrcnn"]
        done = subprocess.run(command + list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = run("train", "--config", "cpu_small", "--iters", "2", "--batch-size", "2", "--out", "run", "--no-progress")
    assert "trained 2 steps" in out
    data = read_checkpoint(work / "run" / "last.pt")["data"]  # the run read the sample inside the installed package
    assert data["train"]["annotations"] == str(sample / "annotations" / "instances_train2017.json")
    out = run("evaluate", "--checkpoint", "run/last.pt")  # on the held-out set the run recorded: the sample's val2017
    assert "results: run/results_instances_val2017_" in out and out.splitlines()[-1].startswith("box AP ")
    photo = sorted((sample / "val2017").glob("*.jpg"))[0]
    out = run("predict", "--checkpoint", "run/last.pt", str(photo), "--out", "predictions")
    assert (work / "predictions" / f"{photo.stem}_pred.png").is_file() and "detection(s)" in out
    assert "box_iou" in run("check", "--list", script=True)

    archives = tiny_coco_archives()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = archives.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server, url = local_http.start(Handler)
    try:
        sums = [f"{p.rsplit('/', 1)[1]}=md5:{hashlib.md5(b).hexdigest()}" for p, b in archives.items()]
        run("download", "--split", "val2017", "--base-url", url, *[f"--checksum={s}" for s in sums])
    finally:
        server.shutdown()
        server.server_close()
    landed = home / ".cache" / "minimaskrcnn" / "coco"  # $XDG_CACHE_HOME/minimaskrcnn: the user's data folder
    assert (landed / "val2017" / "000000000001.jpg").is_file()
    assert (landed / "annotations" / "instances_val2017.json").is_file()
    assert not (site_packages.parent / "data").exists() and not (site_packages / "data").exists()
    assert sorted(p.name for p in work.iterdir()) == ["predictions", "run"]  # nothing else in the current folder
