"""The run lifecycle machinery: the run handle, its write buffer, the background writer and the
process state (active runs, exit and signal hooks)."""
