"""The command blocks of the user docs, as the test suite runs them.

Every fenced ```` ```bash ```` block of a user doc is a command block and carries a name in an
HTML comment on the line before it (invisible when the markdown is rendered)::

    <!-- cmd: pretrain -->
    ```bash
    .venv/bin/python tools/train.py configs/...
    ```

``tests/test_doc_commands.py`` runs each named block exactly as written, in a workspace laid out
like a checkout with the data the docs name, and fails on any block that has no name, shares
one, or is run by no test.
"""
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the docs a user reads (docs/methods.md and docs/dependencies.md hold no command blocks)
USER_DOCS = ['README.md', 'CHANGELOG.md', 'configs/README.md', 'docs/*.md']
_MARKER = re.compile(r'^<!--\s*cmd:\s*([a-z0-9-]+)\s*-->\s*$')
_FENCE = re.compile(r'^(\s*)```(\S*)\s*$')
COMMAND_LANGUAGES = ('bash', 'sh', 'shell', 'console')


@dataclass(frozen=True)
class CommandBlock:
    """One named command block: its name, its doc and line, and its text."""
    name: str
    doc: str
    line: int
    text: str


def user_doc_paths() -> List[Path]:
    paths = []
    for pattern in USER_DOCS:
        paths.extend(sorted(REPO_ROOT.glob(pattern)))
    return paths


def parse_blocks(path: Path) -> List[CommandBlock]:
    """The command blocks of one markdown file.

    Raises:
        ValueError: A command block without a ``<!-- cmd: NAME -->`` line right before it, or
            an unterminated fence.
    """
    lines = path.read_text().splitlines()
    rel = str(path.relative_to(REPO_ROOT))
    blocks, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == '```'), None)
        if end is None:
            raise ValueError(f'{rel}:{start + 1}: unterminated code fence')
        if lang in COMMAND_LANGUAGES:
            marker = _MARKER.match(lines[start - 1]) if start > 0 else None
            if marker is None:
                raise ValueError(f'{rel}:{start + 1}: a {lang} block without a '
                                 '"<!-- cmd: NAME -->" line before it; name it and have a test '
                                 'run it (tests/test_doc_commands.py)')
            blocks.append(CommandBlock(marker.group(1), rel, start + 1,
                                       '\n'.join(lines[start + 1:end]) + '\n'))
        i = end + 1
    return blocks


def all_blocks() -> Dict[str, CommandBlock]:
    """Every command block of the user docs by name.

    Raises:
        ValueError: Two blocks share a name.
    """
    found: Dict[str, CommandBlock] = {}
    for path in user_doc_paths():
        for block in parse_blocks(path):
            if block.name in found:
                other = found[block.name]
                raise ValueError(f'{block.doc}:{block.line}: the name {block.name!r} is taken by '
                                 f'{other.doc}:{other.line}')
            found[block.name] = block
    return found


_CODE_MARKER = re.compile(r'^<!--\s*code:\s*([a-z0-9-]+)\s*-->\s*$')


def code_block(name: str) -> str:
    """The text of the code block named ``<!-- code: NAME -->`` in the user docs (code that a
    test runs as printed, e.g. the example loss of docs/extending.md).

    Raises:
        KeyError: No doc has a block of that name.
    """
    for path in user_doc_paths():
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines[:-1]):
            marker = _CODE_MARKER.match(line)
            if marker and marker.group(1) == name and _FENCE.match(lines[i + 1]):
                end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == '```')
                return '\n'.join(lines[i + 2:end]) + '\n'
    raise KeyError(f'no code block named {name!r} in the user docs')


def run_block(cwd: Path, name: str, timeout: int = 900, env: Optional[dict] = None) -> str:
    """Run one documented command block with ``bash -euo pipefail`` in ``cwd``, with
    ``IMG2LIDAR_TINY=1`` (tiny sizes, see projects/img2lidar/engine/tiny_sizes.py); fails the
    calling test, with the block and the end of its output, when it exits non-zero.

    Returns:
        str: Its standard output and error, interleaved.
    """
    block = all_blocks()[name]
    run_env = dict(os.environ, IMG2LIDAR_TINY='1', **(env or {}))
    run_env.pop('PYTHONPATH', None)
    res = subprocess.run(['bash', '-euo', 'pipefail', '-c', block.text], cwd=cwd, env=run_env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=timeout)
    out = res.stdout
    if res.returncode != 0:
        raise AssertionError(f'{block.doc}:{block.line} ({name}) failed with exit '
                             f'{res.returncode}:\n{block.text}\n...{out[-6000:]}')
    return out
