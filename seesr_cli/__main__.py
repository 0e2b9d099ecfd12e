"""`python -m seesr_cli ...` (also what `accelerate launch -m seesr_cli` runs)."""

from seesr_cli.cli import main

if __name__ == "__main__":
    main()
