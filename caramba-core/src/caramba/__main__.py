"""``python -m caramba MANIFEST [--target NAME] [--dry-run]``."""

import sys

from caramba.cli import main

sys.exit(main())
