"""The gntkit command line (installed as gntkit.cli)."""
