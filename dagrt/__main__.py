"""``python -m dagrt``: the same as the ``dagrt`` command."""

from .cli import main

if __name__ == "__main__":
    main()
