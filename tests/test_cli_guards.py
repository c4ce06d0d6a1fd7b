"""Nothing lost, nothing accepted that makes no sense: a command never replaces an earlier run's or evaluation's
files (paths.make_room: refused in one line, or moved aside with --overwrite), and a flag given as 0 or '' runs or is
refused in one line."""
import json

import pytest

from minimaskrcnn import cli, paths, training
from minimaskrcnn.checkpoint import read_checkpoint
from minimaskrcnn.data.sources import RunData

TINY = ["--data", "shapes", "--num-images", "2", "--num-val-images", "0", "--image-size", "64", "--iters", "1",
        "--batch-size", "2", "--min-size", "64", "--max-size", "64", "--no-progress"]


def earlier_run(folder):
    """A folder as an earlier run left it (what is in the files does not matter to the rule); its contents."""
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"step": 20, "loss": 1.5}\n')
    (folder / "last.pt").write_bytes(b"the earlier run's weights")
    (folder / "notes.txt").write_text("the user's own file")
    return contents(folder)


def contents(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_fresh_train_into_a_folder_holding_a_run_is_refused_and_nothing_changes(tmp_path, capsys):
    """It used to delete the earlier run's metrics.jsonl and write over its last.pt."""
    run = tmp_path / "F"
    before = earlier_run(run)
    assert cli.main(["train", *TINY, "--out", str(run)]) == 2
    err = one_line_error(capsys)
    assert f"{run} already holds last.pt, metrics.jsonl" in err
    assert f"--resume {run / 'last.pt'}" in err and "another --out" in err and "--overwrite" in err
    assert contents(run) == before


def test_overwrite_moves_the_earlier_run_aside_and_never_deletes(tmp_path, capsys):
    run = tmp_path / "F"
    before = earlier_run(run)
    assert cli.main(["train", *TINY, "--out", str(run), "--overwrite"]) == 0
    (aside,) = run.glob("replaced-*")
    assert f"moved last.pt, metrics.jsonl to {aside}/" in capsys.readouterr().out
    assert contents(aside) == {k: v for k, v in before.items() if k != "notes.txt"}  # only the run's files move
    assert (run / "notes.txt").read_text() == "the user's own file"
    assert read_checkpoint(run / "last.pt")["progress"]["step"] == 1
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    # again, within the same second: a second folder, the first one kept as it was
    second = paths.make_room(run, paths.run_files(run), True, "unused")
    assert second.name == aside.name + "-2" or second.name[:9] == "replaced-" and second != aside
    assert paths.run_files(second) == ["best.pt", "last.pt", "loss_curve.png", "metrics.jsonl"]  # this run's
    assert contents(aside) == {k: v for k, v in before.items() if k != "notes.txt"}


def test_the_python_api_refuses_too_unless_told_to_overwrite(tmp_path, capsys):
    run = tmp_path / "F"
    before = earlier_run(run)
    cfg = training.TrainConfig(data=RunData.shapes(2, 0, image_size=64), min_size=64, max_size=64, iters=1,
                               batch_size=2, progress=False, out=str(run))
    with pytest.raises(ValueError, match="already holds last.pt, metrics.jsonl"):
        training.train(cfg)
    assert contents(run) == before
    result = training.train(training.TrainConfig(**{**vars(cfg), "overwrite": True}))
    assert result.step == 1 and len(list(run.glob("replaced-*"))) == 1
    with pytest.raises(ValueError, match="overwrite moves a run aside and TrainConfig.resume continues it"):
        training.TrainConfig(out=str(run), resume=str(run / "last.pt"), overwrite=True)
    # resuming is not replacing: the run goes on in its folder
    resumed = training.train(training.resume_config(run / "last.pt", iters=2))
    assert resumed.step == 2 and len(list(run.glob("replaced-*"))) == 1


def test_demo_refuses_a_folder_holding_a_run(tmp_path, capsys, monkeypatch):
    run = tmp_path / "demo"
    before = earlier_run(run)
    assert cli.main(["demo", "--out", str(run), "--iters", "1"]) == 2
    assert f"{run} already holds last.pt, metrics.jsonl" in one_line_error(capsys)
    assert contents(run) == before


def test_demo_without_held_out_images_trains_and_says_it_does_not_evaluate(tmp_path, capsys):
    """`demo --num-val-images 0` ended in TypeError: object of type 'NoneType' has no len()."""
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--iters", "1", "--num-val-images", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "no held-out images (--num-val-images 0): no evaluation and no predictions drawn"
    assert (tmp_path / "demo" / "last.pt").is_file() and not (tmp_path / "demo" / "results.json").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert cli.main(["train", *TINY, "--out", str(run), "--num-val-images", "2"]) == 0
    return run / "last.pt"


def test_evaluate_does_not_replace_earlier_results(checkpoint, tmp_path, capsys, monkeypatch):
    from minimaskrcnn import evaluation

    out = tmp_path / "results.json"
    out.write_text("earlier results")
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", "shapes", "--num-images", "2", "--out", str(out)]
    with monkeypatch.context() as m:
        m.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("inference ran"))
        assert cli.main(argv) == 2
    assert f"{tmp_path} already holds results.json" in one_line_error(capsys)
    assert out.read_text() == "earlier results"
    assert cli.main(argv + ["--overwrite"]) == 0
    (aside,) = tmp_path.glob("replaced-*")
    assert (aside / "results.json").read_text() == "earlier results"
    assert isinstance(json.loads(out.read_text()), list)


def test_ablate_does_not_replace_a_studys_results_or_runs(tmp_path, capsys, monkeypatch):
    from minimaskrcnn.ablation import run as ablation_run

    out = tmp_path / "ablations"
    before = earlier_run(out / "runs" / "agnostic" / "agnostic" / "seed0")
    (out / "agnostic.json").write_text("earlier study")
    argv = ["ablate", "agnostic", "--seeds", "0", "--iters", "1", "--out", str(out)]
    monkeypatch.setattr(ablation_run, "run_one", lambda *a, **k: pytest.fail("a run trained"))
    assert cli.main(argv) == 2
    err = one_line_error(capsys)
    assert f"{out} already holds agnostic.json, runs/agnostic/agnostic/seed0" in err and "--overwrite" in err
    assert (out / "agnostic.json").read_text() == "earlier study"

    m = {"AP": 0.5, "AP50": 0.7, "AP75": 0.45}
    monkeypatch.setattr(ablation_run, "run_one", lambda name, variant, seed, *a, **k: {
        "variant": variant, "seed": seed, "seconds": 0.0, "mask": m, "box": m})
    assert cli.main(argv + ["--overwrite"]) == 0
    (aside,) = out.glob("replaced-*")
    assert (aside / "agnostic.json").read_text() == "earlier study"
    assert contents(aside / "runs" / "agnostic" / "agnostic" / "seed0") == before
    assert json.loads((out / "agnostic.json").read_text())["study"] == "agnostic"


@pytest.mark.parametrize("argv, flag", [
    (["train", *TINY, "--data", ""], "--data"),  # trained on the default COCO root
    (["train", *TINY, "--data", "coco", "--val-split", ""], "--val-split"),  # trained with no evaluation
    (["train", *TINY, "--config", ""], "--config"),  # trained the default preset
    (["train", *TINY, "--resume", ""], "--resume"),  # started a fresh run
    (["train", *TINY, "--annotations", "", "--images", ""], "--annotations"),  # "annotation file . does not exist"
    (["train", *TINY, "--split", ""], "--split"),  # "annotation file .../instances_.json does not exist"
    (["train", *TINY, "--out", ""], "--out"),  # wrote the run into the current folder
    (["demo", "--out", ""], "--out"),
    (["evaluate", "--checkpoint", ""], "--checkpoint"),  # "checkpoint . does not exist"
    (["evaluate", "--checkpoint", "x.pt", "--out", ""], "--out"),  # wrote results_*.json by default
    (["evaluate", "--checkpoint", "x.pt", "--data", ""], "--data"),  # evaluated on the default COCO root
])
def test_an_empty_flag_is_refused_in_one_line_naming_it(argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an empty --out would have written
    assert cli.main(argv) == 2
    assert one_line_error(capsys).startswith(f"error: {flag} is empty")
    assert list(tmp_path.iterdir()) == []
