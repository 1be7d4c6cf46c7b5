"""Pure building blocks: standard library only, no files, processes, network or database."""
