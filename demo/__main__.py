"""python -m demo --out demo-output: see ``demo.chain``."""

import sys

from .chain import cli

if __name__ == "__main__":
    sys.exit(cli())
