"""What a test compares of a tree: each entry's type, mode and content or link target."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def tree_state(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    state: dict[str, tuple[str, int, bytes | str | None]] = {".": ("dir", stat.S_IMODE(os.lstat(root).st_mode), None)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("symlink", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            elif stat.S_ISFIFO(st.st_mode):
                state[rel] = ("fifo", stat.S_IMODE(st.st_mode), None)
            else:
                state[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return state
