"""``python -m lsq_emulator``: see :mod:`lsq_emulator.cli`."""

from lsq_emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
