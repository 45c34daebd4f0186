"""phaser: electron ptychography from declarative plans."""

__version__ = "0.1.0"
