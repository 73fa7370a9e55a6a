"""`python -m rater_demo`, the same as the `rater-demo` command."""

import sys

from rater_demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
