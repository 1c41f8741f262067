"""``make demo``: the whole pipeline offline in one command (``python -m demo``).

``chain`` runs the user-facing commands one after the other against a local
stand-in of the archive and imgur; ``corpus`` makes that stand-in's pictures
and CSV (from the shared data, or generated).
"""
