"""Print one of the README's two set-up commands, as the README writes it.

    python3 .ci/readme_command.py main     # the main job: measure, list, plan, report
    python3 .ci/readme_command.py tests    # the tests

CI runs these commands as they are written, so they cannot drift from what a new user
copies. The README's "Set-up" section holds exactly two fenced bash blocks of one line each:
the main job, then the tests. Standard library only: it runs before any environment exists.
"""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = ("main", "tests")


def setup_commands(text: str) -> dict[str, str]:
    """The set-up commands of README text, by name; SystemExit with the reason if the section
    is not as described above."""
    match = re.search(r"^## Set-up\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        raise SystemExit(f"{README}: no '## Set-up' section")
    blocks = re.findall(r"^```bash\n(.*?)\n```$", match.group(1), re.M | re.S)
    if len(blocks) != len(NAMES) or any("\n" in block for block in blocks):
        raise SystemExit(f"{README}: the Set-up section must hold exactly {len(NAMES)} "
                         f"one-line bash blocks (the main job, then the tests); found "
                         f"{len(blocks)}")
    return dict(zip(NAMES, blocks))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in NAMES:
        raise SystemExit(f"usage: {sys.argv[0]} {'|'.join(NAMES)}")
    print(setup_commands(README.read_text(encoding="utf-8"))[sys.argv[1]])
