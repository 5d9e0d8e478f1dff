"""SlurmScoreboard: cross-cluster usage high scores from sacct.

Standard library only and Python 3.6 compatible (login nodes have no pip). Imports nothing from
slurmctl but itself and ``slurmctl.portable`` (what it shares with the core); the core never imports it.
"""

__version__ = "0.1.0"
