"""Regenerate the README's parameter tables from the nodes' parameter declarations.

    .venv/bin/python scripts/update_readme_tables.py

Each table sits between `<!-- params:NAME -->` and `<!-- /params -->`; test_config.py fails when
a table is out of date.
"""
import re
import sys
from pathlib import Path

from equimanip.nodes.params import markdown_table
from equimanip.nodes.tables import README_TABLES

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> int:
    text = README.read_text()
    for name, specs in README_TABLES.items():
        pattern = re.compile(rf"(<!-- params:{name} -->\n).*?(\n<!-- /params -->)", re.S)
        if not pattern.search(text):
            print(f"README.md has no <!-- params:{name} --> block", file=sys.stderr)
            return 1
        text = pattern.sub(lambda m: m.group(1) + markdown_table(specs) + m.group(2), text)
    README.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
