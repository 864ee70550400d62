# Two entry points (see README "Quick start"): `make demo` and `make test`.
.PHONY: setup demo test lint bench
setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/unimask demo

test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check src tests benchmarks
