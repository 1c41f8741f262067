"""The out-of-distribution table on a tiny fake copy of the shared data's folder layout."""

import zlib

import numpy as np
import pytest
from PIL import Image

from tests.support.testkit import save
from processing import build_h5
from processing.cliutil import UsageError
from processing.schema import MEME, NON_MEME
from training.ood import (Score, build_inputs, instructive_errors, markdown_table, real_folders, score, score_run,
                          split_scores)
from training.preprocess import Preprocess


@pytest.fixture
def shared(tmp_path):
    """The shared layout in miniature: bright 'memes', dark 'non-memes'."""
    def put(rel, n, bright, size=(160, 200)):
        for i in range(n):
            # distinct pictures (smooth random cells), all bright or all dark: not near duplicates of each other
            rng = np.random.default_rng(zlib.crc32(f"{rel}/{i}".encode()))
            cells = rng.integers(190, 250, (4, 5, 3)) if bright else rng.integers(0, 60, (4, 5, 3))
            img = Image.fromarray(cells.astype(np.uint8)).resize((size[1], size[0]), Image.BILINEAR)
            save(img, tmp_path / rel / f"{i}.png")
    for t in ("doge", "cat", "duck"):
        put(f"memes/advice-animals/{t}", 6, True)
    put("memes/modern/programming", 10, True)
    put("memes/modern/devops", 4, False)                       # the model will miss these
    put("nonmemes-text/movie-posters/Comedy", 5, False)
    put("nonmemes-text/movie-posters/Drama", 5, True)          # and call these memes
    put("nonmemes-text/app-screenshots", 4, False)
    put("memes/world/polish/owner_memes-repo", 6, True)        # <kind>/<owner>_<repo>/ like the real layout
    put("nonmemes-text2/receipts/owner_scans-repo", 6, False)
    put("photos/BSD100", 12, False)
    return tmp_path


class Brightness:
    """A stand-in model: meme probability = mean brightness."""

    def predict_on_batch(self, x):
        p = np.asarray(x, float).mean(axis=(1, 2, 3)) / 255
        return np.stack([1 - p, p], axis=1)


def test_folders_and_build_inputs(shared):
    folders = real_folders(shared)
    assert [f.name for f in folders] == ["memes/advice-animals", "memes/modern/devops", "memes/modern/programming",
                                         "memes/world/polish", "nonmemes-text/app-screenshots",
                                         "nonmemes-text/movie-posters", "nonmemes-text2/receipts", "photos/BSD100"]
    posters = folders[5]
    assert posters.sources == ("folder:Comedy", "folder:Drama") and posters.label == NON_MEME
    # a repository folder is a root of its own (its own source, split file by file), in the family it belongs to
    assert (folders[3].sources, folders[3].family) == (("folder:owner_memes-repo",), "world")
    assert (folders[6].sources, folders[6].family, folders[6].label) == (("folder:owner_scans-repo",), "text", NON_MEME)
    assert not any("world" in a for a in build_inputs(folders, leave_out=("world",)))
    assert not any("nonmemes-text" in a for a in build_inputs(folders, leave_out=("text",)))
    args = build_inputs(folders, leave_out=("modern",))
    assert "--memes" in args and str(shared / "memes" / "advice-animals") in args
    assert not any("modern" in a for a in args)
    assert args.count("--non-memes") == 5   # Comedy and Drama as separate roots: genres are not templates


def test_score_and_split_scores_against_counts(shared):
    assert score("x", MEME, "all", [0.2, 0.6, 0.9], 0.5) == Score("x", MEME, "all", 3, 2)
    assert score("y", NON_MEME, "all", [0.2, 0.6, 0.5], 0.5).correct == 1    # 0.5 is at the threshold: a meme
    folders = real_folders(shared)
    sources = ["folder:advice-animals", "folder:Comedy", "folder:Drama", "folder:BSD100", "folder:advice-animals"]
    out = split_scores(folders, sources, [1, 0, 0, 0, 1], [0.9, 0.1, 0.8, 0.2, 0.4], 0.5)
    assert [(s.folder, s.correct, s.count) for s in out] == [
        ("memes/advice-animals", 1, 2), ("nonmemes-text/movie-posters", 1, 2), ("photos/BSD100", 1, 1)]
    table = markdown_table({"run": out})
    assert "| `run` | `nonmemes-text/movie-posters` | test split | non-meme specificity | 1/2 | 0.500 |" in table


@pytest.mark.slow   # imports Keras (H5Batches): seconds, not milliseconds
def test_score_run_on_a_built_dataset(shared, tmp_path):
    folders = real_folders(shared)
    data = tmp_path / "ds.h5"
    trained = [f for f in folders if f.family != "modern"]
    assert build_h5.main([*build_inputs(trained), "--group-by", "template", "--split", "0.5,0.25,0.25",
                          "--out", str(data), "--no-progress"]) == 0
    scores, errors = score_run(Brightness(), Preprocess(), folders, str(data), {f.name for f in trained})
    by = {s.folder: s for s in scores}
    assert by["memes/modern/programming"].scope == "all, never trained on"
    assert (by["memes/modern/programming"].correct, by["memes/modern/programming"].count) == (10, 10)
    assert (by["memes/modern/devops"].correct, by["memes/modern/devops"].count) == (0, 4)
    assert by["photos/BSD100"].scope == "test split" and by["photos/BSD100"].rate == 1.0
    assert 0 < by["photos/BSD100"].count < 12
    assert {e[0] for e in errors} <= {"memes/modern/devops", "nonmemes-text/movie-posters"}
    assert sum(e[0] == "memes/modern/devops" for e in errors) == 4
    picked = instructive_errors(errors, n=9, per_folder=2)
    assert len(picked) <= 4 and sum(e[0] == "memes/modern/devops" for e in picked) == 2
    assert all(e[3].shape == (128, 128, 3) for e in picked)


def test_instructive_errors_are_the_most_confident_mistakes():
    img = np.zeros((2, 2, 3), np.uint8)
    mistakes = [("a", 1, 0.4, img), ("a", 1, 0.01, img), ("a", 1, 0.1, img), ("b", 0, 0.7, img), ("b", 0, 0.95, img)]
    picked = instructive_errors(mistakes, n=3, per_folder=2)
    assert [(c[0], c[2]) for c in picked] == [("a", 0.01), ("b", 0.95), ("a", 0.1)]


def test_report_writes_the_ood_table_into_the_readme(tmp_path):
    from training import report
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.README_START}\nstale table\n{report.README_END}\nafter\n")
    test = {"accuracy": 0.99, "precision": 1.0, "recall": 0.98, "f1": 0.99, "roc_auc": None}
    results = {"memenet-no-modern": {"what": "leave-one-source-out", "test": test, "threshold": 0.42,
                                     "arch": "memenet", "dataset": "nomodern",
                                     "folders": [Score("memes/modern/devops", MEME, "all, never trained on", 45, 6),
                                                 Score("photos/BSD100", NON_MEME, "test split", 10, 9)]},
               "lite0": {"what": "pretrained", "test": test, "threshold": 0.5, "arch": "lite0", "dataset": "all",
                         "folders": [Score("memes/modern/devops", MEME, "test split", 5, 5)]}}
    meta = {"created": "now", "backend": "tensorflow", "out": "reports/x", "epochs": 1, "shared": "s"}
    report.update_readme(readme, results, meta)
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{report.README_END}\nafter\n") and "stale" not in text
    # side by side: the held-out split of the run on everything, the whole folder of the run that left it out
    assert ("| folder | measure | memenet, test split | lite0, test split | memenet, never trained on | "
            "lite0, never trained on |") in text
    assert "| `memes/modern/devops` | meme recall |  | 5/5 = 1.00 | 6/45 = 0.13 |  |" in text
    assert "BSD100" not in text    # a test split of a leave-one-source-out run is not a column
    assert "honest numbers" in text and "| 0.420 |" in text
    md = report.write_report(tmp_path, tmp_path, results, {"train memenet-no-modern": 1.0}, meta)
    assert "| `memenet-no-modern` | `memes/modern/devops` | all, never trained on | meme recall | 6/45 | 0.133 |" in md
    assert "6/45 = 0.13" in md and (tmp_path / "report.json").is_file()


def test_report_trains_each_run_with_its_flags_and_the_chosen_seed(tmp_path):
    from training import report
    cmd = report.train_command("lite0-no-text", tmp_path / "notext.h5", tmp_path / "run", 3, 7)
    assert cmd[cmd.index("--arch") + 1] == "lite0"
    assert cmd[1:3] == ["-m", "training.run"]
    assert cmd[cmd.index("--seed") + 1] == "7" and cmd[cmd.index("--epochs") + 1] == "3"
    assert cmd[cmd.index("--data") + 1] == str(tmp_path / "notext.h5")
    original = report.train_command("no-photos-no-augment", tmp_path / "d.h5", tmp_path / "r", 1, 0)
    assert original[-len(report.NO_AUG):] == report.NO_AUG
    assert report.parse_args([]).seed == 0 and report.parse_args(["--seed", "1"]).seed == 1
    assert report.parse_args(["--train-flags", "--synth-memes 0"]).train_flags == ("--synth-memes", "0")
    ablation = report.train_command("lite0", tmp_path / "d.h5", tmp_path / "r", 2, 0, ("--synth-memes", "0"))
    assert ablation[-2:] == ["--synth-memes", "0"]
    by_default = report.train_command("lite0-no-world", tmp_path / "d.h5", tmp_path / "r", None, 0)
    assert by_default[by_default.index("--epochs") + 1] == str(report.DEFAULT_EPOCHS["lite0"])


def test_report_runs_are_named_or_all():
    from training import report
    assert report.chosen_runs("memenet-no-text,lite0") == ["memenet-no-text", "lite0"]
    assert report.chosen_runs("all") == [r[0] for r in report.RUNS]
    assert report.chosen_runs(report.parse_args([]).runs) == list(report.DEFAULT_RUNS)
    assert report.chosen_runs(" memenet , lite0-no-text") == ["memenet", "lite0-no-text"]
    assert report.datasets_of(list(report.DEFAULT_RUNS)) == ["all", "nomodern", "notext", "noworld"]
    assert {r[2] for r in report.RUNS if r[0] in report.DEFAULT_RUNS} == {"memenet", "lite0"}
    assert report.datasets_of(["no-photos-no-augment"]) == ["nophotos"]
    for bad in ("", "no-txt", "memenet,nope", "default"):
        with pytest.raises(UsageError, match="--runs takes"):
            report.chosen_runs(bad)


def test_report_with_prebuilt_datasets_still_needs_the_real_folders(tmp_path, monkeypatch):
    """Without them every folder row would be missing from the table, silently (seen with --prebuilt)."""
    from training import report

    monkeypatch.setattr(report, "train_and_evaluate", lambda *a: pytest.fail("trained without the real folders"))
    with pytest.raises(UsageError, match="real data not found: no advice-animals folder"):
        report.main(["--prebuilt", str(tmp_path), "--shared", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])


def test_new_folders_join_the_report_rows_without_a_code_change(shared):
    from tests.support.testkit import save as save_img
    img = Image.new("RGB", (150, 150), "white")
    save_img(img, shared / "memes" / "world7" / "stickers" / "owner_new" / "a.png")
    save_img(img, shared / "nonmemes-text9" / "formulas" / "owner_maths" / "a.png")
    save_img(img, shared / "nonmemes-text9" / "formulas" / "owner_more" / "b.png")
    rows = {f.name: f for f in real_folders(shared)}
    assert rows["memes/world7/stickers"].family == "world" and rows["memes/world7/stickers"].label == MEME
    formulas = rows["nonmemes-text9/formulas"]
    assert (formulas.family, formulas.label, len(formulas.roots)) == ("text", NON_MEME, 2)
    assert rows["memes/advice-animals"].roots == (shared / "memes" / "advice-animals",)   # templates as groups
