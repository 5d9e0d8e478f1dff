"""Modules that run on Python 3.6 with the standard library only, shared by the core and the scoreboard.

The scoreboard (``slurmctl.scoreboard``) runs on login nodes with a bare ``/usr/bin/python3`` 3.6 and no
pip; the core (Python >= 3.11) imports what it shares with the scoreboard from here, never from the
scoreboard itself. Modules here import nothing but the standard library and each other
(``vermin -t=3.6-`` and tests/scoreboard/test_sb_isolation.py check it).
"""
