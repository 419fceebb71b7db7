"""``python -m servicehost`` → the command line."""

from ._startgc import defer

defer()  # fewer collections while the service starts (``_startgc.py``): before the imports below

from .cli import main  # noqa: E402

if __name__ == "__main__":
    main()
