"""``python -m oldphoto`` runs the command line."""

from oldphoto.cli import main

main()
