"""python -m demo --out demo-output: the whole pipeline, offline, in one command.

Starts the local mirror (an LoC-style archive and an imgur-style API on
127.0.0.1), then runs exactly the user-facing commands as subprocesses:
``scrapy crawl loc_archive``, ``scrapy crawl imgur_meme``,
``python -m processing.build_h5``, ``python -m training.run``,
``python -m training.evaluate`` and ``python -m training.predict``, and
prints a summary. Everything lands under ``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from processing.cliutil import ArgumentParser, positive_int, run_main
from processing.manifest import read_manifests, status_counts
from processing.reasons import OK

from training import ARCHS, DEFAULT_ARCH, DEPRECATED_ARCHS, folder_arg
from training.metrics import format_rates
from training.ood import build_inputs, real_folders

from .corpus import make_corpus, write_site

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "data"
DEMO_SIDE = 128


class StageFailed(Exception):
    pass


def run_stage(name: str, cmd: list[str], log_dir: Path, env: dict | None = None) -> float:
    """Run one user-facing command, its output to a log; returns seconds."""
    print(f"[demo] {name}: {' '.join(cmd[1:4])} ...", flush=True)
    t0 = time.time()
    log = log_dir / f"{name}.log"
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if r.returncode not in (0, 1) or (r.returncode == 1 and name != "predict"):
        raise StageFailed(f"{name} failed with exit code {r.returncode}; see {log}")
    return time.time() - t0


def start_mirror(spec: Path, out: Path) -> tuple[subprocess.Popen, str]:
    port_file = out / "mirror.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "crawler.mirror", "--spec", str(spec), "--port-file",
                             str(port_file)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise StageFailed("the local mirror did not start")
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}"


def crawl_settings(base: str, crawl: Path) -> list[str]:
    settings = {"LOC_ARCHIVE": f"{base}/all", "IMGUR_API": base, "FILES_STORE": str(crawl / "files"),
                "MANIFEST_DIR": str(crawl / "manifests"), "REDIRECT_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
                "AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0", "CONCURRENT_REQUESTS_PER_DOMAIN": "8",
                "RETRY_AFTER_MAX": "2", "LOG_LEVEL": "INFO"}
    return [x for k, v in settings.items() for x in ("-s", f"{k}={v}")]


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m demo", description=__doc__)
    p.add_argument("--out", type=folder_arg, default=Path("demo-output"), help="output folder (replaced)")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="real data folder, if present")
    p.add_argument("--generated", action="store_true", help="use the generated corpus even if real data exists")
    p.add_argument("--memes", type=positive_int, default=322, help="memes in the corpus (default: all 322 real ones)")
    p.add_argument("--tiny", type=positive_int, default=600,
                   help="32x32 non-memes in the CIFAR-format tarball (default 600: the real folders add ~1,300 rows)")
    p.add_argument("--arch", default=DEFAULT_ARCH, choices=(*ARCHS, *DEPRECATED_ARCHS))
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: training.run's for the arch)")
    p.add_argument("--side", type=positive_int, default=DEMO_SIDE,
                   help=f"build_h5 --side: the side the demo's model trains and predicts at (default {DEMO_SIDE}: "
                        "see the README's cross-validation for what a smaller side costs)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "logs").mkdir(parents=True)
    shared = None if args.generated else args.shared
    corpus = make_corpus(out / "corpus", shared, args.memes, args.tiny)
    print(f"[demo] corpus: {corpus.kind} ({len(corpus.memes)} memes, {len(corpus.tiny)} tiny non-memes"
          + (f", photos from {corpus.photos}" if corpus.photos else "") + ")", flush=True)
    site = write_site(corpus, out / "site")
    mirror, base = start_mirror(site.spec, out)
    py, crawl, logs = sys.executable, out / "crawl", out / "logs"
    timings = {}
    try:
        timings["crawl loc_archive"] = run_stage("crawl_loc", [py, "-m", "scrapy", "crawl", "loc_archive", "-a",
                                                  f"csv={site.csv}", *crawl_settings(base, crawl)], logs)
        timings["crawl imgur_meme"] = run_stage("crawl_imgur", [py, "-m", "scrapy", "crawl", "imgur_meme",
                                                 *crawl_settings(base, crawl)], logs,
                                                env={"IMGUR_CLIENT_ID": "demo-client-id"})
    finally:
        mirror.terminate()
        mirror.wait()
    dataset = out / "dataset.h5"
    own = [*own_folders(shared), "--source-root", str(shared)] if corpus.photos else []   # sources named by family
    timings["build_h5"] = run_stage("build_h5", [py, "-m", "processing.build_h5", "--manifest", str(crawl / "manifests"),
                                    "--cifar", str(site.cifar), "--cifar-md5", site.cifar_md5, "--cifar-count",
                                    str(len(corpus.tiny)), *own, "--group-by", "template", "--side", str(args.side), "--min-side", "32",
                                    "--out", str(dataset), "--no-progress"], logs)
    run = out / "run"
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    timings["training.run"] = run_stage("train", [py, "-m", "training.run", "--data", str(dataset), "--out", str(run),
                                        "--arch", args.arch, *epochs, "--verbose", "2"], logs)   # the defaults
    if corpus.photos:
        timings["training.evaluate"] = run_stage("evaluate_photos", [py, "-m", "training.evaluate", str(run),
                                                 "--non-memes", str(corpus.photos / "Urban100"), "--out",
                                                 str(out / "photos")], logs)
    samples = [str(p) for p, _ in corpus.memes[:3]] + ([str(p) for p in sorted((corpus.photos / "Urban100").glob("*"))[:3]]
                                                       if corpus.photos else [])
    timings["training.predict"] = run_stage("predict", [py, "-m", "training.predict", str(run), *samples], logs)
    print_summary(out, corpus, site, timings, time.time() - t_start)
    return 0


def own_folders(shared: Path) -> list[str]:
    """build_h5 arguments for the real folders that join the crawled memes and CIFAR pictures ("your own").

    Every other real kind: today's memes (memes/modern), memes in other
    languages (memes/world), the text-bearing non-memes (posters, screenshots,
    photos with text, documents, charts, UI) and the photo sets; Urban100
    stays out of training for the bias check.
    """
    folders = [f for f in real_folders(shared) if f.family in ("modern", "world", "text", "photos")]
    return build_inputs([f for f in folders if f.name != "photos/Urban100"])


def print_summary(out: Path, corpus, site, timings: dict, seconds: float) -> None:
    by_source = status_counts(read_manifests([out / "crawl" / "manifests"]))
    dataset = json.loads((out / "dataset.summary.json").read_text())
    report = json.loads((out / "run" / "report.json").read_text())
    lines = ["", "=" * 72, f"meme-recognition demo on the {corpus.kind} corpus"
             + (" (../shared/data)" if corpus.kind == "real" else " (drawn by the project, no real data used)"),
             "=" * 72]
    for source, counts in by_source.iterrows():
        failed = {k: int(v) for k, v in counts.items() if k != OK and v}
        lines.append(f"crawl {source:12s}: {int(counts.get(OK, 0))} stored, {sum(failed.values())} failed "
                     + (f"({', '.join(f'{k}={v}' for k, v in failed.items())})" if failed else ""))
    lines.append(f"dataset          : {dataset['rows']} rows ({dataset['by_label']['meme']} memes, "
                 f"{dataset['by_label']['non_meme']} non-memes), skipped {dataset['skipped'] or 'none'}")
    lines.append(f"test split       : accuracy {report['accuracy']:.4f}, F1 {report['f1']:.4f}, "
                 f"ROC-AUC {report['roc_auc'] if report['roc_auc'] is None else round(report['roc_auc'], 4)} "
                 f"on {report['count']} images ({report['epochs_run']} epochs)")
    lines.append(f"test by family   : {format_rates(report['by_family'])}")
    photos = out / "photos" / "report.json"
    if photos.exists():
        p = json.loads(photos.read_text())
        lines.append(f"real photos      : {p['accuracy']:.4f} called non-meme ({p['count']} full-resolution Urban100 "
                     "photos, never trained on; the other photo sets were among the training non-memes)")
    lines.append("predictions      : " + str(out / "logs" / "predict.log"))
    for line in (out / "logs" / "predict.log").read_text().splitlines():
        if "\t" in line:
            lines.append("    " + line)
    lines.append("timings (s)      : " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    lines.append(f"everything is in {out} (report and plots in {out / 'run'}); total {seconds:.0f} s")
    print("\n".join(lines))


def cli(prog: str = "demo") -> int:
    """The command: a bad argument is one line and exit 2 (``run_main``), a failed stage one line and exit 1."""
    try:
        return run_main(prog, main)
    except StageFailed as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
