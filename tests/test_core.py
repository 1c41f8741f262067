"""Fast in-process checks of the core contracts: build config and sharding, the schema,
the reason vocabulary, manifest precedence and the preprocessing contract."""

import json
import random
import re
import time
from dataclasses import FrozenInstanceError

import h5py
import numpy as np
import pytest

from tests.support.testkit import picture, save
from processing import build_h5, reasons, schema
from processing.cliutil import UsageError
from processing.manifest import (ManifestChanged, ManifestWriter, Record, final_digests, key_digest, read_manifests,
                                 winners)
from processing.pipeline import BuildConfig, check, collect_inputs, for_shard, shard_of
from training.preprocess import Preprocess


@pytest.fixture
def folder(tmp_path):
    for t in range(3):
        for i in range(4):
            save(picture(160, 200, seed=10 * t + i), tmp_path / "memes" / f"t{t}" / f"{i}.png")
    return tmp_path / "memes"


def test_config_is_frozen_and_normalises_names(folder, tmp_path):
    config = BuildConfig(out=str(tmp_path / "x.h5"), memes=[folder], fit="seed")
    assert config.fit == "original" and config.memes == (str(folder),) and config.out == tmp_path / "x.h5"
    with pytest.raises(FrozenInstanceError):
        config.workers = 3   # type: ignore[misc]


@pytest.mark.parametrize("change, message", [
    ({"memes": ()}, "no inputs"),
    ({"manifests": ("/dev/null",)}, "not a regular file"),
    ({"manifests": (__file__,)}, "not a crawl manifest"),   # a Python file
    ({"memes": ("/nonexistent/folder",)}, "input not found"),
    ({"workers": 0}, "--workers"),
    ({"group_by": "colour"}, "--group-by"),
    ({"near_duplicate_bits": 64}, "--near-duplicate-bits"),
    ({"near_duplicate_bits": -2}, "--near-duplicate-bits"),
])
def test_check_refuses_configs_that_cannot_build(folder, tmp_path, change, message):
    config = BuildConfig(out=tmp_path / "x.h5", **{"memes": (str(folder),), **change})
    with pytest.raises(UsageError, match=message):
        check(config)


def test_shards_partition_the_inputs_exactly_once(folder, tmp_path):
    whole = BuildConfig(out=tmp_path / "x.h5", memes=(str(folder),), workers=2, progress=True)
    keys = {x.key for x in collect_inputs(whole, tmp_path)}
    parts = [for_shard(whole, tmp_path / f"s{i}.h5", i, 3) for i in range(3)]
    assert all(p.workers == 1 and not p.progress and p.shard == (i, 3) for i, p in enumerate(parts))
    assert all(p.params()["inputs"] == whole.params()["inputs"] for p in parts)
    shard_keys = [{x.key for x in collect_inputs(p, tmp_path)} for p in parts]
    assert set().union(*shard_keys) == keys and sum(map(len, shard_keys)) == len(keys)
    assert all(shard_of(k, 3) == i for i, ks in enumerate(shard_keys) for k in ks)


def test_abbreviated_options_are_refused(folder, tmp_path, capsys):
    # argparse's abbreviations once turned --sched into --scheduler and broke every shard
    with pytest.raises(SystemExit) as exc:
        build_h5.parse_args(["--memes", str(folder), "--out", str(tmp_path / "x.h5"), "--shards", "2",
                             "--sched", "tcp://127.0.0.1:1"])
    assert exc.value.code == 2 and "unrecognized arguments: --sched" in capsys.readouterr().err


def test_sharded_file_has_the_one_piece_attributes(folder, tmp_path):
    one, sharded = tmp_path / "one.h5", tmp_path / "sharded.h5"
    common = ["--memes", str(folder), "--no-progress", "--workers", "1"]
    assert build_h5.main([*common, "--out", str(one)]) == 0
    assert build_h5.main([*common, "--out", str(sharded), "--shards", "2"]) == 0
    with h5py.File(one) as a, h5py.File(sharded) as b:
        attrs_a, attrs_b = dict(a.attrs), dict(b.attrs)
    assert set(attrs_b) - set(attrs_a) == {"shards"}
    for name in set(attrs_a) - {"created", "rows_committed", "skips_committed"}:
        assert attrs_b[name] == attrs_a[name], name
    assert attrs_a["tool_version"] == schema.TOOL_VERSION
    assert json.loads(attrs_a["label_names"]) == list(schema.LABEL_NAMES)


def test_every_reason_has_a_meaning_and_transient_ones_are_not_final():
    named = {v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)}
    assert named == reasons.ALL and all(reasons.MEANINGS[r] for r in named)
    assert reasons.is_known("http_404") and reasons.is_known("too_small") and not reasons.is_known("oops")
    for status in (reasons.TIMEOUT, reasons.CONNECTION_ERROR, reasons.QUOTA_EXHAUSTED, "http_429", "http_503"):
        assert not reasons.is_final(status)
    for status in (reasons.OK, reasons.MD5_MISMATCH, reasons.BAD_ROW, "http_404"):
        assert reasons.is_final(status)


KEYS = [(source, str(i)) for source in ("s", "other") for i in range(8)]


def final_members(paths, keys, source=None):
    """Which of ``keys`` ``final_digests`` holds."""
    done = final_digests(paths, source)
    return {k for k in keys if key_digest(k) in done}


def final_keys(folder) -> set[tuple[str, str]]:
    return {k for k, r in read_manifests([folder]).records.items() if r.final}


def test_manifest_precedence_ok_beats_failure_then_newest_wins(tmp_path):
    now = time.time()
    with ManifestWriter(tmp_path / "a.jsonl") as w:
        w.write(Record(source="s", source_id="1", status=reasons.OK, path="x.png", time=now - 10))
        w.write(Record(source="s", source_id="2", status=reasons.TIMEOUT, time=now - 10))
        w.write(Record(source="s", source_id="3", status=reasons.http_reason(404), time=now - 10))
    with ManifestWriter(tmp_path / "b.jsonl") as w:
        w.write(Record(source="s", source_id="1", status=reasons.TIMEOUT, time=now))       # later failure loses
        w.write(Record(source="s", source_id="2", status=reasons.MD5_MISMATCH, time=now))  # later verdict wins
        w.write(Record(source="s", source_id="3", status=reasons.OK, path="y.png", time=now - 20))  # ok wins
    got = {k[1]: r.status for k, r in read_manifests([tmp_path]).records.items()}
    assert got == {"1": reasons.OK, "2": reasons.MD5_MISMATCH, "3": reasons.OK}
    assert final_keys(tmp_path) == {("s", "1"), ("s", "2"), ("s", "3")}
    with ManifestWriter(tmp_path / "c.jsonl") as w:   # a later transient failure makes a failed row open again
        w.write(Record(source="s", source_id="4", status=reasons.MD5_MISMATCH, time=now - 10))
        w.write(Record(source="s", source_id="4", status=reasons.TIMEOUT, time=now))
        w.write(Record(source="s", source_id="5", status=reasons.TIMEOUT, time=now - 10))
        w.write(Record(source="s", source_id="5", status=reasons.http_reason(404), time=now))
    assert final_keys(tmp_path) == {("s", "1"), ("s", "2"), ("s", "3"), ("s", "5")}
    assert final_members([tmp_path], KEYS) == {("s", "1"), ("s", "2"), ("s", "3"), ("s", "5")}
    with ManifestWriter(tmp_path / "d.jsonl") as w:
        w.write(Record(source="other", source_id="1", status=reasons.OK, path="z.png", time=now))
    assert final_members([tmp_path], KEYS, "other") == {("other", "1")}
    assert final_members([tmp_path], KEYS, "s") == {("s", "1"), ("s", "2"), ("s", "3"), ("s", "5")}


def plain_winners(folder):
    """The rule in plain Python, file by file, line by line: a stored image beats a failure, then the newer record,
    then the later one; torn lines as "file:line". Winners as key -> (status, time, detail)."""
    best, torn = {}, []
    for path in sorted(folder.glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text().split("\n"), 1):
            if not line.strip():
                continue
            try:
                rec = Record.from_dict(json.loads(line))
            except (ValueError, TypeError):
                torn.append(f"{path.name}:{lineno}")
                continue
            if rec.key not in best or (rec.ok, rec.time) >= (best[rec.key].ok, best[rec.key].time):
                best[rec.key] = rec
    return {k: (r.status, r.time, r.detail) for k, r in best.items()}, torn


@pytest.mark.parametrize("seed", range(4))
def test_streamed_winners_follow_the_plain_rule(tmp_path, seed):
    rng = random.Random(seed)
    statuses = [reasons.OK, reasons.TIMEOUT, reasons.MD5_MISMATCH, "http_404"]
    for name in ("a.jsonl", "b.jsonl", "c.jsonl"):
        lines = []
        for i in range(rng.randint(0, 80)):
            if rng.random() < 0.05:
                lines.append(rng.choice(["", "{torn", '{"source": "s", "source_id": "1", "status": "ok", "time": NaN}']))
                continue
            rec = Record(source=rng.choice("st"), source_id=str(rng.randint(0, 15)), status=rng.choice(statuses),
                         time=float(rng.randint(0, 5)), path="p.png", detail=f"{name}:{i}")   # equal times: later wins
            lines.append(rec.to_json())
        (tmp_path / name).write_text("".join(x + "\n" for x in lines))
    expected, torn = plain_winners(tmp_path)
    records, streamed_torn = winners([tmp_path])
    got = {rec.key: (rec.status, rec.time, rec.detail) for rec in records}
    assert got == expected and streamed_torn == torn


def test_streamed_winners_refuse_a_manifest_rewritten_between_passes(tmp_path):
    (tmp_path / "m.jsonl").write_text(Record(source="s", source_id="1", status="ok", path="p").to_json() + "\n")
    records, _ = winners([tmp_path])
    (tmp_path / "m.jsonl").write_text("")
    with pytest.raises(ManifestChanged):
        list(records)


def test_lines_that_are_not_records_are_counted_not_raised(tmp_path):
    """A manifest line with a field of the wrong type, an unknown status, a JSON non-object or an ok record naming
    no file is a torn line."""
    good = {"source": "s", "source_id": "1", "status": reasons.NO_CAPTURE}
    lines = [good, {**good, "source_id": "2", "path": [1, 2]}, {**good, "source_id": "3", "status": "weird"},
             {**good, "source_id": ["x"]}, {**good, "source_id": "4", "time": "yesterday"}, [1, 2], "text",
             {**good, "source_id": "5", "status": reasons.OK}]   # ok, but no stored file: crashed the build
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    resolved = read_manifests([tmp_path])
    assert list(resolved.records) == [("s", "1")] and resolved.torn_lines == [f"m.jsonl:{i}" for i in range(2, 9)]
    assert final_members([tmp_path], KEYS) == {("s", "1")}


def test_preprocess_round_trips_and_reads_old_names(tmp_path):
    assert Preprocess.load(tmp_path) == Preprocess()          # a model saved without one gets the defaults
    pre = Preprocess(fit="seed", size=96, threshold=0.4, arch="memenet")
    pre.save(tmp_path)
    loaded = Preprocess.load(tmp_path)
    assert loaded == pre and loaded.fit == "original"
    assert loaded.label(0.4) == "meme" and loaded.label(0.39) == "non_meme"
    assert loaded.with_threshold(None) is loaded and loaded.with_threshold(0.9).label(0.5) == "non_meme"
    assert loaded.apply(np.asarray(picture(300, 200))).shape == (96, 96, 3)


def test_status_counts_table(tmp_path):
    from processing.manifest import status_counts

    with ManifestWriter(tmp_path / "m.jsonl") as w:
        for i, status in enumerate([reasons.OK, reasons.OK, "http_404", reasons.MD5_MISMATCH]):
            w.write(Record(source="loc_archive", source_id=str(i), status=status, path="x.png"))
        w.write(Record(source="imgur", source_id="a", status=reasons.REMOVED))
    table = status_counts(read_manifests([tmp_path]))
    assert list(table.columns) == [reasons.OK, "http_404", reasons.MD5_MISMATCH, reasons.REMOVED]
    assert table.loc["loc_archive"].tolist() == [2, 1, 1, 0] and table.loc["imgur"].tolist() == [0, 0, 0, 1]


def test_bare_build_reads_the_conventional_places(tmp_path, monkeypatch, capsys):
    from processing import paths

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no inputs"):
        build_h5.to_config(build_h5.parse_args([]))
    with ManifestWriter(paths.MANIFEST_DIR / "loc_archive-h-1.jsonl") as w:
        for i in range(3):
            p = save(picture(200, 200, seed=i), paths.FILES_STORE / f"{i}.png")
            w.write(Record(source="loc_archive", source_id=str(i), status=reasons.OK, path=str(p.resolve())))
    for i in range(4):
        save(picture(32, 32, seed=50 + i, caption=None), paths.TINY_DIR / "things" / f"{i}.png")
    assert build_h5.main(["--no-progress"]) == 0
    with h5py.File(paths.DATASET) as f:
        assert sorted(f["labels"][:].tolist()) == [0] * 4 + [1] * 3
    with pytest.raises(UsageError, match="exists"):          # a second bare run does not overwrite
        build_h5.main(["--no-progress"])


def test_manifest_lines_no_builder_could_use_are_torn_not_fatal(tmp_path):
    """Lines that parse as JSON but hold what no dataset row or file name can: counted as torn, the rest read."""
    good = {"source": "s", "source_id": "1", "status": reasons.TIMEOUT, "time": 1.0}
    bad = [{**good, "source_id": "\ud800x"}, {**good, "status": reasons.OK, "path": "1.jpg\x00.txt"},
           {**good, "label": -1}, {**good, "label": 2**70}, {**good, "label": 5}]
    lines = [json.dumps(good)] + [json.dumps(b) for b in bad] + ["[" * 100_000 + "]" * 100_000]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    got = read_manifests([tmp_path])
    assert list(got.records) == [("s", "1")] and got.torn_lines == [f"m.jsonl:{n}" for n in range(2, 8)]


@pytest.mark.timeout(30)
def test_manifest_folders_read_regular_files_only(tmp_path):
    """A FIFO named *.jsonl would block the read, a folder or a dangling link end it: never opened; the
    builder (and the feeder) refuse such a folder in one line."""
    import os

    from processing.manifest import manifest_problem

    with ManifestWriter(tmp_path / "a.jsonl") as w:
        w.write(Record(source="s", source_id="1", status=reasons.TIMEOUT, time=1.0))
    assert manifest_problem(tmp_path) is None
    os.mkfifo(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").mkdir()
    (tmp_path / "d.jsonl").symlink_to(tmp_path / "nowhere")
    assert list(read_manifests([tmp_path]).records) == [("s", "1")]
    assert final_digests([tmp_path]) is not None
    assert manifest_problem(tmp_path) == "holds b.jsonl, a FIFO, not a manifest file: remove it"
    (tmp_path / "b.jsonl").unlink()
    (tmp_path / "c.jsonl").rmdir()
    assert manifest_problem(tmp_path) == "holds d.jsonl, a link to nothing, not a manifest file: remove it"
    with pytest.raises(UsageError, match="holds d.jsonl, a link to nothing"):
        check(BuildConfig(manifests=(str(tmp_path),), out=tmp_path / "o.h5"))


def test_a_folder_given_twice_is_refused(tmp_path):
    """Its pictures would have one key under two labels: the second copy would leave no record."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "pics")
    for memes, non_memes, says in (((tmp_path / "pics",), (tmp_path / "pics",), "(--memes and --non-memes)"),
                                   ((tmp_path / "pics", tmp_path / "link"), (), "(--memes and --memes)")):
        with pytest.raises(UsageError, match=re.escape(says)):
            check(BuildConfig(memes=tuple(map(str, memes)), non_memes=tuple(map(str, non_memes)),
                              out=tmp_path / "o.h5"))
