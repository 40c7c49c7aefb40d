"""`python -m cinecli` is the same program as the `cinecli` command."""

from cinecli.cli import main

if __name__ == "__main__":
    main()
