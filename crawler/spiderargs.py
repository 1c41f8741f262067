"""Spider arguments (``-a name=value``) checked before a crawl starts.

A spider declares the arguments it takes as ``ARGUMENTS`` (a tuple of
names); ``scrapy crawl`` (crawler/commands/crawl.py) rejects any other name
in one line with exit code 2, so a misspelt ``-a max_item=5`` cannot quietly
crawl everything. An argument given with no value is refused the same way
(``-a limit=`` is not "no limit"). Messages quote user input through ``excerpt`` so a wrong
file cannot flood the terminal.
"""

from __future__ import annotations

from scrapy.exceptions import UsageError

EXCERPT_CHARS = 60
FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def excerpt(value, limit: int = EXCERPT_CHARS) -> str:
    """``repr`` of the input, cut to ``limit`` characters with the full length named."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def check_arguments(spider_cls, args: dict) -> None:
    allowed = getattr(spider_cls, "ARGUMENTS", None)
    if allowed is None:
        return
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        takes = ", ".join(f"-a {a}=" for a in allowed) or "no -a arguments"
        raise UsageError(f"unknown argument(s) {', '.join('-a ' + excerpt(u, 30) for u in unknown)}; "
                         f"{spider_cls.name} takes {takes}")
    if empty := [name for name, value in args.items() if not str(value).strip()]:
        raise UsageError(f"-a {empty[0]}= has no value: give one, or leave the argument out for its default")


def flag(name: str, value) -> bool:
    """A yes/no ``-a`` value: 1/0, true/false, yes/no in any case; anything else is refused (UsageError),
    so a misspelt ``-a include_animated=ture`` cannot quietly mean no."""
    try:
        return FLAGS[str(value).strip().lower()]
    except KeyError:
        raise UsageError(f"-a {name}= takes {'/'.join(FLAGS)}, got {excerpt(value)}") from None
