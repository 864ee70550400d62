"""``python -m unimask`` (and ``torchrun -m unimask``) runs the CLI."""

from unimask.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
