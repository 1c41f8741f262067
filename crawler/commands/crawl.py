"""``scrapy crawl`` that checks a spider's arguments before anything starts.

A spider may define ``validate_arguments(settings, args)`` raising
``UsageError``: a missing CSV or imgur client id is then one line on stderr
and exit code 2, before logging starts or anything is written.
"""

import sys

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError
from scrapy.spiderloader import get_spider_loader


class Command(ScrapyCrawl):
    def process_options(self, args, opts):
        super().process_options(args, opts)
        if len(args) != 1:
            return
        loader = get_spider_loader(self.settings)
        if args[0] not in loader.list():
            return
        validate = getattr(loader.load(args[0]), "validate_arguments", None)
        if validate is None:
            return
        try:
            validate(self.settings, opts.spargs)
        except UsageError as exc:
            print(f"scrapy crawl {args[0]}: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
