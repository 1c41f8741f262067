"""Where the four bare commands read and write, relative to the working directory.

Like Scrapy's ``FILES_STORE``, these conventional places let the design's
commands chain with no arguments: ``scrapy crawl loc_archive`` and
``scrapy crawl imgur_meme`` read their lists from ``data/`` and write to
``data/crawl/``; ``python -m processing.build_h5`` reads those manifests plus,
where present, the CIFAR-100 tarball, ``data/tiny/`` and ``data/non-memes/``,
and writes ``data/dataset.h5``;
``python -m training.run`` trains on it into ``runs/<timestamp>/``. Every
command still takes explicit paths.
"""

from pathlib import Path

DATA = Path("data")
MEME_GENERATOR_CSV = DATA / "memegenerator.csv"      # the Meme Generator data set file (loc_archive's input)
IMGUR_LINKS = DATA / "imgur_links.txt"               # a list of i.imgur.com links (imgur_meme's input)
CIFAR_TARBALL = DATA / "cifar-100-python.tar.gz"     # the official CIFAR-100 archive
TINY_DIR = DATA / "tiny"                             # your own 32x32 non-meme pictures (like --tiny)
NON_MEME_DIR = DATA / "non-memes"                    # your own non-meme pictures of any size (like --non-memes)
FILES_STORE = DATA / "crawl" / "files"               # crawled originals, content-addressed
MANIFEST_DIR = DATA / "crawl" / "manifests"          # one JSONL manifest per crawl process
DATASET = DATA / "dataset.h5"
RUNS = Path("runs")
