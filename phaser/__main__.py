"""Allow `python -m phaser ...`."""

from phaser.cli import main

raise SystemExit(main())
