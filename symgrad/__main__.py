"""``python -m symgrad ...``: the same command line as ``symgrad ...``."""

import sys

from symgrad.cli import main

if __name__ == "__main__":
    sys.exit(main())
