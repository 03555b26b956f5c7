"""Files written whole or not at all: the text goes to a temporary file with a unique name in
the destination folder, then replaces the destination (``os.replace``, atomic on one file
system). A reader never sees a partial file, and two writers never share a temporary name."""
import json
import os
import os.path as osp
import tempfile


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (its folder is made if needed)."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as indented JSON to ``path``."""
    write_text_atomic(path, json.dumps(obj, indent=2))
