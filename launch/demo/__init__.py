"""`cxr-sr demo`: the whole pipeline on the embedded default, step by step, with a report.

Modules, one job each: ``settings`` (what the demo does, full or quick), ``steps`` (running a
step with progress, a log file and a completion marker), ``pipeline`` (the steps themselves),
``holdback`` (test-split images out of the shards), ``cpp`` (the C++ example, when built),
``plots`` and ``figures`` (PNG figures drawn with Pillow), ``report`` (table and report.md).
"""
