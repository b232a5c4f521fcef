"""``python -m cardgen``: the same as the ``cardgen`` console script."""

from cardgen.cli import main

if __name__ == "__main__":
    main()
