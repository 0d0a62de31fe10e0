"""Reading split lists as released: BOM, CRLF, GBK/GB18030, blank lines, and paths that must stay in the root.

Every problem becomes a one-line DataError naming the file (and the line), never a traceback and never a
silently wrong label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.errors import DataError

DEFAULT_ENCODINGS = ("utf-8-sig", "gb18030")


def read_text(path: Path, encodings: tuple[str, ...] = DEFAULT_ENCODINGS) -> tuple[str, str]:
    """(text, encoding). The first encoding that decodes the whole file wins; `utf-8-sig` strips a BOM.

    Why GB18030 second: MAFW's with_caption lists are GBK (a subset of GB18030) and never valid UTF-8.
    """
    if not path.is_file():
        raise DataError(f"{path}: split list not found; check the dataset root (bench data check)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read split list ({e.strerror}); check permissions") from None
    for enc in encodings:
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: cannot decode as {' or '.join(encodings)}; re-save it as UTF-8")


def read_lines(path: Path, encodings: tuple[str, ...] = DEFAULT_ENCODINGS) -> list[str]:
    """Non-blank lines of a text file, tolerant of a UTF-8 BOM, CRLF/CR and (for MAFW captions) GBK text."""
    return [ln for _, ln in numbered_lines(path, encodings)]


def numbered_lines(path: Path, encodings: tuple[str, ...] = DEFAULT_ENCODINGS) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) for every non-blank line, so errors can point at the line."""
    text, _ = read_text(path, encodings)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = []
    for i, ln in enumerate(lines, 1):
        s = ln.strip().lstrip("\ufeff").strip()
        if s:
            out.append((i, s))
    return out


def file_sha256(path: Path) -> str:
    """Checksum of a split file: recorded in manifests and used to invalidate the manifest cache."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_join(root: Path, rel: str, list_file: Path, line: int | None = None) -> Path:
    """Join a relative path from a split list to the root, refusing absolute paths and `..` escapes."""
    where = f"{list_file}:{line}" if line else f"{list_file}"
    norm = rel.replace("\\", "/")
    rel_path = Path(norm)
    if rel_path.is_absolute() or norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise DataError(
            f"{where}: path {rel!r} is absolute; lists must hold paths relative to the dataset root "
            "(strip the authors' prefix, e.g. data.options.prefix=/their/prefix/)"
        )
    if ".." in rel_path.parts:
        raise DataError(
            f"{where}: path {rel!r} escapes the dataset root; lists must hold paths relative to the root"
        )
    return root / rel_path


def parse_int(text: str, list_file: Path, line: int | None, what: str = "label") -> int:
    """An integer field, or a one-line error naming the file and line."""
    try:
        return int(text.strip())
    except ValueError:
        where = f"{list_file}:{line}" if line else f"{list_file}"
        raise DataError(f"{where}: {what} {text!r} is not an integer; check the list format") from None


def map_label(name: str, classes: tuple[str, ...], list_file: Path, aliases: dict[str, str] | None = None,
              line: int | None = None) -> int:
    """Class name -> index in the dataset's declared order (case-insensitive); never a guessed integer."""
    key = name.strip()
    if aliases and key.lower() in aliases:
        key = aliases[key.lower()]
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    if key.lower() not in lookup:
        where = f"{list_file}:{line}" if line else f"{list_file}"
        shown = ", ".join(classes) if len(classes) <= 12 else ", ".join(classes[:12]) + ", ..."
        raise DataError(
            f"{where}: label {name!r} is not a class of this dataset ({shown}); fix the list or the label order"
        )
    return lookup[key.lower()]
