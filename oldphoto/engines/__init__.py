"""Engines that run a planned batch somewhere other than this process.

The local engine is :func:`oldphoto.batch.run`. Engines here reuse its planning
(:func:`oldphoto.batch.plan`) and its one-photo restore path
(:func:`oldphoto.batch.restore_job`); they only decide where each photo runs.
Each engine imports its cluster library lazily, so ``oldphoto`` works without it.
"""
