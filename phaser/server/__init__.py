"""``phaser serve``: a job queue in SQL, workers that poll it over HTTP, and live views over WebSockets.

Modules: :mod:`~phaser.server.store` (the queue and logs, SQLAlchemy), :mod:`~phaser.server.hub`
(latest update per job, pushed to subscribers), :mod:`~phaser.server.security` (token, body
limits, root folders), :mod:`~phaser.server.submit` (plans from the network),
:mod:`~phaser.server.studies` (phaser-opt study jobs), :mod:`~phaser.server.dashboards`
(their optuna-dashboards), :mod:`~phaser.server.previews` (live-view
images), :mod:`~phaser.server.app`
(the Starlette routes), :mod:`~phaser.server.worker` (``phaser worker``), :mod:`~phaser.server.cli`.
Nothing is imported here, so ``phaser --help`` does not load Starlette or SQLAlchemy.
"""
