"""The README's Python example runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_examples_print_what_they_say(capsys):
    """Each example ends with a comment line showing what it prints; the run must print that."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    for code in blocks:
        expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
        exec(compile(code, "README.md", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        assert printed == expected
