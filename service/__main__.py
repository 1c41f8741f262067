"""python -m service MODEL [...]: serve a trained model (see ``service.app``)."""

import sys

from processing.cliutil import run_main

from .app import main

if __name__ == "__main__":
    sys.exit(run_main("service", main))
