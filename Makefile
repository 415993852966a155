# The two commands README.md starts with. Each creates its own virtual environment (.venv).
.PHONY: demo test venv lint bench

venv:
	@bash scripts/venv.sh

demo: venv
	.venv/bin/hybridcot demo

test: venv
	@bash scripts/browser.sh
	.venv/bin/python -m pytest -p no:cacheprovider

lint: venv
	.venv/bin/ruff check src tests bench

bench: venv
	@for b in bench/[!_]*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done
