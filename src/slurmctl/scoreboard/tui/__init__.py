"""SlurmScoreboard TUI: an Old School RuneScape style high-score viewer for the scoreboard's files.

Layers, each usable on its own:

* ``settings``  -- where the data is (flags > environment > ``~/.slurm_scoreboard/config.yaml``);
* ``store``     -- finds and loads leaderboard JSON files under the shared root (read-only, never sacct);
* ``viewmodel`` -- rows in, a sorted / filtered / searched / windowed table of strings out (pure);
* ``frame``     -- lays a view out as styled text lines for a given terminal size (pure);
* ``controller``-- key names to state changes, shared by every backend;
* ``backend_curses`` / ``backend_ansi`` / ``backend_textual`` -- put frames on a screen.

Everything except ``backend_textual`` (which imports textual lazily) is standard library only and
Python 3.6 compatible, because login nodes run ``/usr/bin/python3`` 3.6 with no pip.
"""
