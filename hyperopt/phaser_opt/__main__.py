"""``python -m phaser_opt`` is ``phaser-opt``."""

import sys

from phaser_opt.cli import main

sys.exit(main())
