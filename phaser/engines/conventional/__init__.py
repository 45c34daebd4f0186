"""Conventional engines: ePIE (3PIE for multislice) and LSQML, with per-position position correction.

Each group step runs the multislice model forward, corrects the far-field waves with the noise
model, and back-propagates the correction through the slices into object, probe and positions.
The code is written once over an array namespace ``xp`` (numpy, jax.numpy or cupy); on jax each
group step is jit-compiled. The engine (an init/step pair for :mod:`phaser.engines.loop`) is
:data:`phaser.engines.conventional.run.CONVENTIONAL_ENGINE`.
"""
