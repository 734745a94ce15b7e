"""The `participants` shell: assembles the apps' sub-commands into one command line."""
