"""``scrapy crawl`` that checks a spider's arguments before anything starts.

A spider may define ``validate_arguments(settings, args)`` raising
``UsageError``: a missing CSV or imgur client id is then one line on stderr
and exit code 2, before logging starts or anything is written. A ``REDIS_URL``
that is malformed or unreachable is reported the same way. A crawl that
stopped for a reason in ``distributed.FAILED_FINISH_REASONS`` exits 1.
"""

import sys

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError
from scrapy.spiderloader import get_spider_loader

from crawler.distributed import FAILED_FINISH_REASONS, redis_url_problem


class Command(ScrapyCrawl):
    def process_options(self, args, opts):
        super().process_options(args, opts)
        if len(args) != 1:
            return
        url = self.settings.get("REDIS_URL")
        if url:
            problem = redis_url_problem(url, self.settings.getfloat("REDIS_CONNECT_TIMEOUT"))
            if problem:
                self._usage_error(args[0], f"cannot use REDIS_URL={url}: {problem}")
        loader = get_spider_loader(self.settings)
        if args[0] not in loader.list():
            return
        validate = getattr(loader.load(args[0]), "validate_arguments", None)
        if validate is None:
            return
        try:
            validate(self.settings, opts.spargs)
        except UsageError as exc:
            self._usage_error(args[0], str(exc))

    @staticmethod
    def _usage_error(spider: str, message: str):
        print(f"scrapy crawl {spider}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None

    def _create_crawler(self, spidercls):
        self.crawler = super()._create_crawler(spidercls)
        return self.crawler

    def run(self, args, opts):
        super().run(args, opts)
        if self.crawler.stats.get_value("finish_reason") in FAILED_FINISH_REASONS:
            self.exitcode = 1
