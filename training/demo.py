"""python -m training.demo: the old name of ``python -m demo``, kept for one release (the demo moved to its own
package, ``demo/``); same arguments, same behaviour."""

import sys

if __name__ == "__main__":
    from demo.chain import cli

    sys.exit(cli("training.demo"))
