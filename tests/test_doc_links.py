"""Every relative link of the user docs points at a file of the repository and, with a
``#fragment``, at a heading of that file (as GitHub renders headings to anchors)."""
import re
from pathlib import Path

import pytest

from doc_commands import REPO_ROOT, user_doc_paths

_LINK = re.compile(r'\]\(([^)\s]+)\)')
_HEADING = re.compile(r'^#{1,6}\s+(.*?)\s*$')


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, markup and punctuation other than
    hyphens and underscores removed, spaces turned into hyphens."""
    text = re.sub(r'[`*]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: Path) -> set:
    found, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith('```'):
            in_code = not in_code
        elif not in_code and (m := _HEADING.match(line)):
            found.add(github_anchor(m.group(1)))
    return found


def test_github_anchor_rule():
    assert github_anchor('The demo (`bash tools/demo.sh`)') == 'the-demo-bash-toolsdemosh'
    assert github_anchor('Before the first iteration: the data check') == \
        'before-the-first-iteration-the-data-check'


@pytest.mark.parametrize('doc', user_doc_paths(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in _LINK.findall(doc.read_text()):
        if re.match(r'[a-z]+://|mailto:', target):
            continue
        path, _, fragment = target.partition('#')
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f'{target}: no such file')
        elif fragment and dest.suffix == '.md' and fragment not in anchors(dest):
            broken.append(f'{target}: no heading with that anchor')
    assert not broken, broken
