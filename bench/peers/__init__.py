"""The peers' own Boltzmann wealth models, run in their own virtual environments.

Each peer is a standalone script (it imports nothing from Norn: its environment has only
the peer's packages) that builds its model (setup, untimed), runs ``--steps`` steps
``--repeat`` times on fresh models, and prints one JSON line with its timings, the
versions that ran, the total wealth and the Gini coefficient. ``envs`` creates the
environments on first use.
"""
