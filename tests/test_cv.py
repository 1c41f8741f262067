"""Folder discovery (training.realdata) and the grouped cross-validation (training.cv) on a made-up shared tree."""

import json
import zlib

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.support.testkit import save
from processing import build_h5
from processing.cliutil import UsageError
from processing.schema import MEME, NON_MEME, SPLIT_NAMES
from training import cv
from training.realdata import build_args, discover, families, family_of_source


def put(root, rel, n, bright, size=(140, 170)):
    for i in range(n):
        rng = np.random.default_rng(zlib.crc32(f"{rel}/{i}".encode()))
        cells = rng.integers(190, 250, (4, 5, 3)) if bright else rng.integers(0, 60, (4, 5, 3))
        save(Image.fromarray(cells.astype(np.uint8)).resize((size[1], size[0]), Image.BILINEAR), root / rel / f"{i}.png")


def tiny(root, rel, n):
    for i in range(n):
        rng = np.random.default_rng(zlib.crc32(f"{rel}/{i}".encode()))
        save(Image.fromarray(rng.integers(0, 80, (32, 32, 3)).astype(np.uint8)), root / rel / f"{i}.png")


@pytest.fixture
def shared(tmp_path):
    """Bright 'memes' in two families, dark 'non-memes' in three, tiny pictures, and things that are not pictures."""
    root = tmp_path / "shared"
    for t in ("doge", "cat", "duck"):
        put(root, f"memes/classic/{t}", 4, True)
    put(root, "memes/newfam/kind-a/owner_repo", 6, True)
    put(root, "memes/newfam/kind-b/owner_repo", 5, True)     # one repository filed under two kinds
    put(root, "memes/newfam/kind-c/other_repo", 7, True)
    put(root, "nonmemes-text9/forms/owner_forms", 6, False)
    put(root, "nonmemes-text9/signs", 5, False)
    put(root, "photos/set1", 8, False)
    put(root, "photos/set2", 6, False)
    tiny(root, "tiny/cifar/cat", 6)
    tiny(root, "tiny/cifar/dog", 6)
    (root / "MANIFEST.md").write_text("not a picture")
    (root / "csv").mkdir()
    (root / "csv" / "rows.csv").write_text("a,b\n")
    put(root, "memes/.hidden/x", 2, True)
    return root


def test_discovery_finds_every_source_folder_from_the_layout(shared):
    sources = discover(shared)
    assert [(s.name, s.family, s.label) for s in sources] == [
        ("memes/classic/cat", "classic", MEME), ("memes/classic/doge", "classic", MEME),
        ("memes/classic/duck", "classic", MEME), ("memes/newfam/kind-a/owner_repo", "newfam", MEME),
        ("memes/newfam/kind-b/owner_repo", "newfam", MEME), ("memes/newfam/kind-c/other_repo", "newfam", MEME),
        ("nonmemes-text9/forms/owner_forms", "nonmemes-text9", NON_MEME),
        ("nonmemes-text9/signs", "nonmemes-text9", NON_MEME), ("photos/set1", "photos", NON_MEME),
        ("photos/set2", "photos", NON_MEME), ("tiny/cifar/cat", "tiny", NON_MEME), ("tiny/cifar/dog", "tiny", NON_MEME)]
    assert families(sources) == ["classic", "newfam", "nonmemes-text9", "photos", "tiny"]
    assert sources[3].origin == sources[4].origin == "owner_repo"
    assert sources[3].key == "folder:memes/newfam/kind-a/owner_repo" and sources[-1].key == "tiny:tiny/cifar/dog"
    # a folder added to the shared data joins without a code change
    put(shared, "memes/brandnew/x/owner_new", 3, True)
    assert ("memes/brandnew/x/owner_new", "brandnew") in [(s.name, s.family) for s in discover(shared)]
    args = build_args(sources, tiny_total=8)
    assert args.count("--memes") == 6 and args.count("--non-memes") == 4 and args.count("--tiny") == 2
    assert args[-2:] == ["--tiny-count", "4"]


def test_source_root_keeps_folders_of_one_name_apart(shared, tmp_path):
    out = tmp_path / "d.h5"
    assert build_h5.main([*build_args(discover(shared), 4), "--source-root", str(shared), "--min-side", "32",
                          "--out", str(out), "--no-progress"]) == 0
    with h5py.File(out) as f:
        names = {s.decode() for s in f["source"][:]}
    assert {s.key for s in discover(shared)} == names
    assert {s.key: family_of_source(s.key) for s in discover(shared)} == {s.key: s.family for s in discover(shared)}
    assert family_of_source("loc_archive") == "loc_archive" and family_of_source("folder:mine") == "folder:mine"
    assert "folder:memes/newfam/kind-a/owner_repo" in names and "folder:memes/newfam/kind-b/owner_repo" in names
    with pytest.raises(UsageError, match="--source-root .* is not a folder"):
        build_h5.main(["--memes", str(shared / "photos/set1"), "--source-root", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "e.h5")])


def test_folds_hold_each_group_once_are_seeded_and_balanced():
    rng = np.random.default_rng(0)
    rows = {f"g{i}": {("a", "b", "c")[i % 3]: int(rng.integers(1, 60))} for i in range(40)}
    rows["both"] = {"a": 10, "b": 5}
    folds = cv.assign_folds(rows, 5, seed=0)
    assert set(folds) == set(rows) and set(folds.values()) == set(range(5))
    assert cv.assign_folds(rows, 5, seed=0) == folds
    assert cv.assign_folds(rows, 5, seed=1) != folds
    for fam in "abc":
        per_fold = np.zeros(5)
        for g, fams in rows.items():
            per_fold[folds[g]] += fams.get(fam, 0)
        biggest = max(f.get(fam, 0) for f in rows.values())
        assert per_fold.max() - per_fold.min() <= biggest    # as even as the groups allow
    with pytest.raises(ValueError):
        cv.assign_folds(rows, 1, seed=0)


def test_fold_splits_hold_out_whole_sources():
    base = np.array([0, 1, 0, 0, 1, 0], np.uint8)
    src = np.array(["a", "a", "b", "c", "c", "c"])
    split = cv.fold_splits(base, src, {"c"})
    assert split.tolist() == [0, 1, 0, 2, 2, 2]


def test_aggregate_tables_add_up_to_the_sources(shared):
    sources = discover(shared)
    keys = [s.key for s in sources]
    scores = []
    for seed in (0, 1):
        for fold, part in enumerate((keys[:6], keys[6:])):
            src = [k for k in part for _ in range(3)]
            label = [MEME if k.startswith("folder:memes") else NON_MEME for k in src]
            prob = [0.9 if (i + seed) % 3 else 0.1 for i in range(len(src))]
            scores.append({"seed": seed, "fold": fold, "source": src, "label": label, "prob": prob, "threshold": 0.5,
                           "val_threshold": 0.95})
    result = cv.aggregate(scores, sources, [0, 1])
    for fam, row in result["families"].items():
        members = [r for r in result["sources"].values() if r["family"] == fam]
        assert row["count"] == [sum(r["count"][i] for r in members) for i in (0, 1)]
        assert row["correct"] == [sum(r["correct"][i] for r in members) for i in (0, 1)]
    assert result["pooled"]["meme recall"]["count"] == [18, 18]
    assert result["pooled"]["meme recall"]["rates"] == [12 / 18, 12 / 18]   # two of every three right
    spec = result["pooled"]["non-meme specificity"]["rates"]
    assert spec == [6 / 18, 6 / 18]
    assert set(result["pair_auc"]) == {"classic", "newfam"}
    strict = cv.aggregate(scores, sources, [0, 1], "val_threshold")     # every 0.9 falls below 0.95
    assert strict["pooled"]["meme recall"]["rates"] == [0, 0]
    assert strict["pooled"]["non-meme specificity"]["rates"] == [1, 1]
    row = cv.rate_row([3, 4], [4, 4])
    assert (row["mean"], row["spread"]) == (0.875, 0.25)
    result.update(folds=2, minutes=1.0)
    md = cv.markdown(result, "t")
    assert "| classic | meme recall | 9 |" in md and "| `photos/set1` | specificity | 3 |" in md


def test_class_prior_threshold_is_the_share_of_non_memes_trained_on():
    labels = np.array([MEME, NON_MEME, NON_MEME, NON_MEME])
    assert cv.prior_threshold(labels) == 0.75
    # the Bayes decision for balanced-weight probabilities under a 1:3 prior: odds p/(1-p) x 1/3 > 1 <=> p > 0.75
    for p in (0.7, 0.8):
        assert (p / (1 - p) / 3 > 1) == (p > cv.prior_threshold(labels))


def test_readme_block_is_replaced_or_added():
    text = "# x\n<!-- cv:end -->\ntail\n"
    once = cv.replace_block(text, "plain", "table 1")
    assert once == "# x\n<!-- cv:plain:start -->\ntable 1\n<!-- cv:plain:end -->\n\n<!-- cv:end -->\ntail\n"
    twice = cv.replace_block(once, "plain", "table 2")
    assert "table 1" not in twice and twice.count("cv:plain:start") == 1 and "table 2" in twice


def test_command_line_errors_are_one_line(capsys):
    for argv in (["--out", "x", "--seeds", "0,0"], ["--out", "x", "--folds", "1"],
                 ["--out", "x", "--train-flags", "'"]):
        with pytest.raises(SystemExit) as exc:
            cv.parse_args(argv)
        assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) <= 3


@pytest.mark.slow   # trains 2 small models
def test_cross_validation_end_to_end(shared, tmp_path):
    out = tmp_path / "cv"
    readme = tmp_path / "README.md"
    readme.write_text("# r\n<!-- cv:end -->\n")
    extra = shared.parent / "extra"            # training-only non-memes (datasets/debian_docs.py's kind of folder)
    put(extra.parent, "extra", 3, False)
    argv = ["--shared", str(shared), "--out", str(out), "--quick", "--name", "smoke", "--readme", str(readme),
            "--train-flags", "--arch memenet --batch-size 8 --sizes 32", "--build-flags", f"--non-memes {extra}"]
    assert cv.main(argv) == 0
    result = json.loads((out / "cv.json").read_text())
    fold_of = result["fold_of"]["0"]
    assert set(fold_of) == {s.name for s in discover(shared)} and set(fold_of.values()) == {0, 1}
    assert fold_of["memes/newfam/kind-a/owner_repo"] == fold_of["memes/newfam/kind-b/owner_repo"]
    for k in (0, 1):      # each fold scored exactly its own sources, each in full
        scores = json.loads((out / "seed0" / f"fold{k}" / "scores.json").read_text())
        held = {s.key for s in discover(shared) if fold_of[s.name] == k}
        assert set(scores["source"]) == held
        with h5py.File(out / "seed0" / f"fold{k}" / "data.h5") as f:
            split, src = f["split"][:], np.array([s.decode() for s in f["source"][:]])
            assert f["images"].shape[0] == len(split)
        assert set(src[split == SPLIT_NAMES.index("test")]) == held
        assert not held & set(src[split != SPLIT_NAMES.index("test")])
        assert (src == "folder:extra").sum() == 3                       # the extra folder trains every fold
    assert sum(r["count"][0] for r in result["sources"].values()) == 30 + 25 + 12   # every picture once
    meta = result["metadata"]          # the file-metadata classifier scored every picture on the same folds
    assert meta["rows"] == 30 + 25 + 12 and meta["unread"] == 0 and 0 <= meta["roc_auc"]["mean"] <= 1
    assert "file metadata alone" in (out / "cv.md").read_text()
    assert "cv:smoke:start" in readme.read_text() and (out / "cv.png").stat().st_size > 1000
    for rule in ("at_val_threshold", "at_prior_threshold"):     # the same pictures under the other threshold rules
        assert result[rule]["pooled"]["meme recall"]["count"] == result["pooled"]["meme recall"]["count"]
    scores_file = out / "seed0" / "fold0" / "scores.json"
    before = scores_file.stat().st_mtime_ns
    assert cv.main(argv) == 0     # a finished fold is not redone
    assert scores_file.stat().st_mtime_ns == before
    old = json.loads(scores_file.read_text())                 # a fold scored before the class-prior threshold existed
    prior = old.pop("prior_threshold")
    scores_file.write_text(json.dumps(old))
    model = (out / "seed0" / "fold0" / "run" / "model.keras").stat().st_mtime_ns
    assert cv.main(argv) == 0
    assert json.loads(scores_file.read_text())["prior_threshold"] == prior      # added back, from the fold's data
    assert (out / "seed0" / "fold0" / "run" / "model.keras").stat().st_mtime_ns == model   # not retrained


def test_comparison_puts_variants_side_by_side(tmp_path, capsys):
    def result(name, recall, spec, seeds):
        row = cv.rate_row
        return {"name": name, "seeds": seeds, "minutes": 3.0,
                "families": {"tiny": {"label": NON_MEME, **row([spec] * len(seeds), [1] * len(seeds))},
                             "zfam": {"label": MEME, **row(recall, [10] * len(seeds))}},
                "pooled": {"meme recall": row(recall, [10] * len(seeds)),
                           "non-meme specificity": row([spec] * len(seeds), [1] * len(seeds)),
                           "roc_auc": {"per_seed": [0.9] * len(seeds), "mean": 0.9, "spread": 0.0}}}
    table = cv.comparison([result("a", [8, 6], 1, [0, 1]), result("b", [9], 0, [0])])
    lines = table.splitlines()
    assert lines[0].startswith("| variant | seeds | minutes | recall | specificity | ROC-AUC | recall, val threshold |")
    assert lines[0].endswith(" | zfam | tiny |")                                          # memes first, tiny last
    assert lines[2] == ("| `a` | 2 | 3 | 0.700 (0.200) | **1.000** (0.000) | **0.900** (0.000) | n/a | n/a | n/a "
                        "| n/a | 0.700 (0.200) | **1.000** (0.000) |")
    assert lines[3] == "| `b` | 1 | 3 | **0.900** | 0.000 | **0.900** | n/a | n/a | n/a | n/a | **0.900** | 0.000 |"
    assert "meme recall for zfam; specificity for the others" in table
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result("a", [8, 6], 1, [0, 1])))
    b.write_text("not json")
    assert cv.main(["--compare", str(a)]) == 0 and "| `a` | 2 | 3 |" in capsys.readouterr().out
    with pytest.raises(UsageError, match="not a cv.json"):
        cv.main(["--compare", str(a), str(b)])
    with pytest.raises(SystemExit) as exc:
        cv.parse_args([])
    assert exc.value.code == 2


def test_bad_out_and_train_flags_are_one_line_before_any_work(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    cases = [(["--out", str(a_file)], "is a file, not a folder"),
             (["--out", str(tmp_path / "o"), "--train-flags", "--epochs zero"], "expected a whole number"),
             (["--out", str(tmp_path / "o"), "--train-flags=--help"], "not a training flag"),
             (["--out", str(tmp_path / "o"), "--train-flags", "--seed 3 --lr 1e-4"], "--seed are set by training.cv")]
    for argv, said in cases:
        with pytest.raises(UsageError, match=said):
            cv.main(argv)
    assert not (tmp_path / "o").exists()


def test_epochs_default_to_what_the_variants_own_training_run_trains(tmp_path):
    from training.run import EPOCHS

    def epochs(*argv):
        args = cv.parse_args(["--out", str(tmp_path / "o"), *argv])
        cv.check_args(args)
        return args.epochs

    assert epochs() == EPOCHS["lite0"]
    assert epochs("--train-flags", "--arch memenet") == EPOCHS["memenet"]
    assert epochs("--epochs", "7", "--train-flags", "--arch memenet") == 7
    assert epochs("--quick") == 1
