"""``python -m labtrack``: the same as the ``labtrack`` command."""

from labtrack.cli import main

if __name__ == "__main__":
    main(prog_name="labtrack")
