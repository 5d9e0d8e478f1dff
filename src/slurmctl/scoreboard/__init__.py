"""SlurmScoreboard: cross-cluster usage high scores from sacct.

Standard library only and Python 3.6 compatible (login nodes have no pip). Imports nothing from the
rest of slurmctl; the rest of slurmctl may import it (e.g. ``parser`` for sacct parsing).
"""

__version__ = "0.1.0"
