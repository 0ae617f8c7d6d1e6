"""The sections of scripts/bench.py, one module each, on the helpers in ``common``.

Imported as ``benches.*`` with scripts/ on sys.path (as ``python scripts/bench.py`` runs),
the way they import ``launcher``.
"""
