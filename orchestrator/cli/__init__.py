"""The command line (typer): parses options, calls the packages, renders."""
