"""``scrapy crawl`` that checks a spider's arguments before anything starts.

A spider may declare ``ARGUMENTS`` (see crawler/spiderargs.py) and define
``validate_arguments(settings, args)`` raising ``UsageError``: an unknown
argument, a missing CSV or imgur client id is then one line on stderr and
exit code 2, before logging starts or anything is written; so is a
``REDIS_URL`` that is malformed or unreachable, a ``MANIFEST_DIR`` or
``JOBDIR`` that cannot be a folder (a file, a device), and a ``-s NAME=VALUE``
whose value is not of the setting's type (``CONCURRENT_REQUESTS=abc``). A crawl that
stops for any reason other than finishing its work (an error at start, a
``CloseSpider`` raised by the spider) exits with code 1, and so does one whose
closing accounting finds a row without a record or with two final records
(crawler/rowguard.py).
"""

import sys

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError
from scrapy.settings import SETTINGS_PRIORITIES, default_settings
from scrapy.spiderloader import get_spider_loader

from .. import settings as project_settings
from ..distributed import redis_url_problem
from ..pipelines import folder_problem
from ..rowguard import rows_lost
from ..spiderargs import check_arguments


class Command(ScrapyCrawl):
    def process_options(self, args, opts):
        super().process_options(args, opts)
        if len(args) != 1:
            return
        url = self.settings.get("REDIS_URL")
        if url and (problem := redis_url_problem(url, self.settings.getfloat("REDIS_CONNECT_TIMEOUT"))):
            usage_error(args[0], f"cannot use REDIS_URL={url}: {problem}")
        if problem := folder_problem(self.settings.get("MANIFEST_DIR")):
            usage_error(args[0], f"cannot write the manifests to MANIFEST_DIR: {problem}; "
                                 f"pass -s MANIFEST_DIR=DIR, a folder (made when missing)")
        if self.settings.get("JOBDIR") and (problem := folder_problem(self.settings.get("JOBDIR"))):
            usage_error(args[0], f"cannot keep the crawl's state in JOBDIR: {problem}; "
                                 f"pass -s JOBDIR=DIR, a folder (made when missing)")
        if problem := command_line_setting_problem(self.settings):
            usage_error(args[0], problem)
        loader = get_spider_loader(self.settings)
        if args[0] not in loader.list():
            return
        spider_cls = loader.load(args[0])
        try:
            check_arguments(spider_cls, opts.spargs)
            validate = getattr(spider_cls, "validate_arguments", None)
            if validate is not None:
                validate(self.settings, opts.spargs)
        except UsageError as exc:
            usage_error(args[0], str(exc))

    def run(self, args, opts):
        if len(args) != 1:
            return super().run(args, opts)
        crawler = self._create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        stats = crawler.stats.get_stats() if crawler.stats else {}
        if self.crawler_process.bootstrap_failed or not exit_ok(stats.get("finish_reason")) or rows_lost(stats):
            self.exitcode = 1


def command_line_setting_problem(settings) -> str | None:
    """The first ``-s NAME=VALUE`` whose VALUE cannot be what NAME's default is (a number, a yes/no), or None.

    Scrapy reads such a value only when a component starts, and then ends in
    a traceback. A number default takes any number (Scrapy reads some int
    defaults as floats, e.g. ``DOWNLOAD_DELAY = 0``); a 0 or 1 default also a
    yes/no (``TELNETCONSOLE_ENABLED = 1`` is a switch).
    """
    for name in settings:
        if settings.getpriority(name) != SETTINGS_PRIORITIES["cmdline"]:
            continue
        default = getattr(project_settings, name, getattr(default_settings, name, None))
        if isinstance(default, bool):
            readers, expected = (settings.getbool,), "0/1 or true/false"
        elif isinstance(default, (int, float)):
            readers = (settings.getfloat, settings.getbool) if default in (0, 1) else (settings.getfloat,)
            expected = "a number"
        else:
            continue
        if not any(_reads(read, name) for read in readers):
            return f"-s {name}={settings.get(name)!r}: expected {expected}"
    return None


def _reads(read, name: str) -> bool:
    try:
        read(name)
    except ValueError:
        return False
    return True


def usage_error(spider: str, message: str):
    print(f"scrapy crawl {spider}: error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


def exit_ok(finish_reason: str | None) -> bool:
    """Whether a crawl that closed with ``finish_reason`` did its job (or was told to stop by its operator):
    ``finished``, ``shutdown`` (Ctrl-C) and Scrapy's ``closespider_*`` limits; None: it never closed."""
    return finish_reason is None or finish_reason in ("finished", "shutdown") or \
        finish_reason.startswith("closespider_")
