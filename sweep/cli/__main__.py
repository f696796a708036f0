"""``python -m sweep.cli``: the same as the ``sweep`` console script."""

import sys

from sweep.cli import main

sys.exit(main())
