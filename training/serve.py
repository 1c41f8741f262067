"""python -m training.serve: the old name of ``python -m service``, kept for one release (the service moved to
its own package, ``service/``); same arguments, same behaviour."""

import sys

from processing.cliutil import run_main

if __name__ == "__main__":
    from service.app import main

    sys.exit(run_main("training.serve", main))
