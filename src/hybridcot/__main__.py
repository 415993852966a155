"""`python -m hybridcot <stage> ...`: the same CLI as the `hybridcot` entry point."""

from hybridcot.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
