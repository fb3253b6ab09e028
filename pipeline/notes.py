"""Mentor notes on samples: an append-only SQLite log beside the experiment's artifacts.

Storage: ``<experiment>/notes.sqlite``, one table ``notes`` (note_id, sample_id, tag, action, text, author,
created). Every write is a single INSERT in its own short ``BEGIN IMMEDIATE`` transaction on a fresh
connection, in WAL mode with a busy timeout, so several mentors (processes, threads, browser sessions) can
write at once: no row is ever updated or deleted, hence no note can be lost to a concurrent writer.

Current tags are derived, not stored: the state of (sample, tag) is the action of its latest row in commit
order (``note_id``): ``add`` means tagged, ``remove`` (from `remove_tag` / `clear_tags`) means not. Two
mentors adding different tags to one sample both win; an add and a remove racing on the same tag resolve to
whichever committed last, and both rows stay in the history and the CSV export.

Tags: the standard ones in `TAGS`, or any other short custom tag. The pseudo-tag `COMMENT` carries free
text only and never becomes a current tag. Tags are normalised (trimmed, inner whitespace collapsed,
lower-cased) so "Label  wrong" and "label wrong" are one tag.

Unknown sample ids: allowed by default. Notes key on the sample id string, and an experiment's sample table
can be rebuilt; a note on an id that has since vanished is kept (nothing is lost) and `orphan_ids` reports
it. Pass ``known_ids`` to `add_note` to refuse ids that are not in the sample table.

Reads never create the file: with no notes yet they return empty results. No Streamlit, no TensorFlow,
nothing happens on import. WAL needs a local file system (not NFS/SMB), like the rest of the artifacts.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Collection, Iterable

import pandas as pd

NOTES_FILE = "notes.sqlite"
SCHEMA_VERSION = 1
LABEL_WRONG = "label wrong"
TAGS: tuple[str, ...] = (LABEL_WRONG, "artefact", "hard case", "good example")
COMMENT = "comment"
ADD, REMOVE = "add", "remove"
NOTE_COLUMNS = ("note_id", "sample_id", "tag", "action", "text", "author", "created")
MAX_TAG_CHARS = 64
MAX_TEXT_CHARS = 5000
MAX_AUTHOR_CHARS = 100
MAX_SAMPLE_ID_CHARS = 1000
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    note_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id TEXT NOT NULL,
    tag       TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('add', 'remove')),
    text      TEXT NOT NULL DEFAULT '',
    author    TEXT NOT NULL DEFAULT '',
    created   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_by_sample_tag ON notes (sample_id, tag, note_id);
CREATE INDEX IF NOT EXISTS notes_by_tag ON notes (tag, note_id);
"""


# ---------------------------------------------------------------- validation

def _invalid(name: str, expected: str, received: object) -> ValueError:
    return ValueError(f"Invalid value for argument `{name}`. Expected {expected}. Received: {received!r}")


def _clean_text(name: str, value: object, max_chars: int, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _invalid(name, "a string", value)
    text = value.strip()
    if required and not text:
        raise _invalid(name, "a non-empty string", value)
    if len(text) > max_chars:
        raise _invalid(name, f"at most {max_chars} characters", f"{len(text)} characters")
    if "\x00" in text:
        raise _invalid(name, "text without NUL characters", value[:40])
    return text


def normalize_tag(tag: object) -> str:
    """A tag as stored: trimmed, inner whitespace collapsed, lower-cased; ValueError naming `tag` if empty."""
    if not isinstance(tag, str):
        raise _invalid("tag", f"a non-empty string such as one of {list(TAGS)}", tag)
    norm = " ".join(tag.split()).lower()
    if not norm:
        raise _invalid("tag", f"a non-empty string such as one of {list(TAGS)}", tag)
    if len(norm) > MAX_TAG_CHARS:
        raise _invalid("tag", f"at most {MAX_TAG_CHARS} characters", f"{len(norm)} characters")
    if any(not ch.isprintable() for ch in norm):
        raise _invalid("tag", "printable characters only", tag)
    return norm


def _check_sample_id(sample_id: object, known_ids: Collection[str] | None) -> str:
    if not isinstance(sample_id, str) or not sample_id.strip():
        raise _invalid("sample_id", "a non-empty string", sample_id)
    if len(sample_id) > MAX_SAMPLE_ID_CHARS:
        raise _invalid("sample_id", f"at most {MAX_SAMPLE_ID_CHARS} characters", f"{len(sample_id)} characters")
    if known_ids is not None and sample_id not in known_ids:
        raise _invalid("sample_id", "an id of the experiment's samples.parquet", sample_id)
    return sample_id


def _check_exp_dir(exp_dir: Path | str) -> Path:
    path = Path(exp_dir)
    if not path.is_dir():
        raise _invalid("exp_dir", "an existing experiment folder", str(exp_dir))
    return path


def notes_path(exp_dir: Path | str) -> Path:
    """Where an experiment's notes live: ``<exp_dir>/notes.sqlite``."""
    return Path(exp_dir) / NOTES_FILE


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------- connections

def _connect(path: Path) -> sqlite3.Connection:
    """A fresh connection in autocommit mode (transactions are explicit) with a busy timeout."""
    con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return con


def _retry_locked(fn, attempts: int = 50):
    """Run `fn`, retrying the rare SQLITE_BUSY that the busy handler cannot wait out (WAL set-up races)."""
    for i in range(attempts):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(min(0.01 * (i + 1), 0.2))
    raise AssertionError("unreachable")


def _open_for_write(exp_dir: Path | str) -> sqlite3.Connection:
    """Connect, creating the file and schema once; WAL and synchronous=FULL so a committed note survives."""
    path = notes_path(_check_exp_dir(exp_dir))
    con = _connect(path)
    try:
        if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _retry_locked(lambda: _create_schema(con))
        con.execute("PRAGMA synchronous = FULL")
    except BaseException:
        con.close()
        raise
    return con


def _create_schema(con: sqlite3.Connection) -> None:
    # journal_mode is persistent in the file; switching needs no open transaction.
    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"database is locked (journal_mode is {mode}, WAL wanted)")
    con.execute("BEGIN IMMEDIATE")
    try:
        if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                con.execute(stmt)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _open_for_read(exp_dir: Path | str) -> sqlite3.Connection | None:
    """A connection to an existing notes file, or None when no note was ever written."""
    path = notes_path(exp_dir)
    if not path.is_file():
        return None
    con = _connect(path)
    if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        con.close()  # created by a writer that has not finished its schema yet: no notes
        return None
    return con


def _append(exp_dir: Path | str, rows: list[tuple[str, str, str, str, str]]) -> list[int]:
    """Insert (sample_id, tag, action, text, author) rows in one short transaction; their note ids."""
    with closing(_open_for_write(exp_dir)) as con:
        def write() -> list[int]:
            con.execute("BEGIN IMMEDIATE")
            try:
                created = _now()
                ids = [con.execute("INSERT INTO notes (sample_id, tag, action, text, author, created) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (*row, created)).lastrowid for row in rows]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return [int(i) for i in ids]
        return _retry_locked(write)


# ---------------------------------------------------------------- writes

def add_note(exp_dir: Path | str, sample_id: str, tag: str, text: str = "", author: str = "",
             known_ids: Collection[str] | None = None) -> int:
    """Append a note tagging `sample_id` with `tag` (plus free `text`); returns its note id.

    Use tag `COMMENT` for free text alone (then `text` is required). With `known_ids`, an id not in it is
    refused; without, any id is accepted (see the module docstring).
    """
    sid = _check_sample_id(sample_id, known_ids)
    norm = normalize_tag(tag)
    body = _clean_text("text", text, MAX_TEXT_CHARS, required=norm == COMMENT)
    who = _clean_text("author", author, MAX_AUTHOR_CHARS, required=False)
    return _append(exp_dir, [(sid, norm, ADD, body, who)])[0]


def remove_tag(exp_dir: Path | str, sample_id: str, tag: str, author: str = "", text: str = "") -> int:
    """Append a note that removes `tag` from `sample_id` (the history keeps the earlier note); its note id."""
    sid = _check_sample_id(sample_id, None)
    norm = normalize_tag(tag)
    if norm == COMMENT:
        raise _invalid("tag", f"a tag other than {COMMENT!r} (comments are history, not tags)", tag)
    body = _clean_text("text", text, MAX_TEXT_CHARS, required=False)
    who = _clean_text("author", author, MAX_AUTHOR_CHARS, required=False)
    return _append(exp_dir, [(sid, norm, REMOVE, body, who)])[0]


def clear_tags(exp_dir: Path | str, sample_id: str, author: str = "", text: str = "") -> list[str]:
    """Remove every current tag of `sample_id` in one transaction; returns the tags removed."""
    sid = _check_sample_id(sample_id, None)
    body = _clean_text("text", text, MAX_TEXT_CHARS, required=False)
    who = _clean_text("author", author, MAX_AUTHOR_CHARS, required=False)
    with closing(_open_for_write(exp_dir)) as con:
        def write() -> list[str]:
            con.execute("BEGIN IMMEDIATE")  # read and write under one lock: no tag added meanwhile is missed
            try:
                tags = [t for t, in con.execute(
                    "SELECT tag FROM (SELECT tag, action, max(note_id) FROM notes WHERE sample_id = ? "
                    "AND tag != ? GROUP BY tag) WHERE action = ? ORDER BY tag", (sid, COMMENT, ADD))]
                created = _now()
                con.executemany("INSERT INTO notes (sample_id, tag, action, text, author, created) "
                                "VALUES (?, ?, ?, ?, ?, ?)", [(sid, t, REMOVE, body, who, created) for t in tags])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return tags
        return _retry_locked(write)


# ---------------------------------------------------------------- reads

def _empty_notes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "note_id" else object) for c in NOTE_COLUMNS})


def notes_for(exp_dir: Path | str, sample_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The note history (columns `NOTE_COLUMNS`, oldest first), of all samples or only `sample_ids`."""
    con = _open_for_read(exp_dir)
    if con is None:
        return _empty_notes()
    cols = ", ".join(NOTE_COLUMNS)
    with closing(con):
        if sample_ids is None:
            df = pd.read_sql_query(f"SELECT {cols} FROM notes ORDER BY note_id", con)
        else:
            ids = sorted({str(s) for s in sample_ids})
            if not ids:
                return _empty_notes()
            frames = []
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                frames.append(pd.read_sql_query(
                    f"SELECT {cols} FROM notes WHERE sample_id IN ({marks})", con, params=chunk))
            df = pd.concat(frames, ignore_index=True).sort_values("note_id", ignore_index=True)
    return df if len(df) else _empty_notes()


def current_tags(exp_dir: Path | str) -> pd.DataFrame:
    """One row per sample with at least one current tag: (sample_id, tags), tags a sorted tuple of str."""
    con = _open_for_read(exp_dir)
    empty = pd.DataFrame({"sample_id": pd.Series(dtype=object), "tags": pd.Series(dtype=object)})
    if con is None:
        return empty
    with closing(con):
        # SQLite returns the bare columns of the row holding max(note_id) in each group: the latest action.
        rows = con.execute(
            "SELECT sample_id, tag FROM (SELECT sample_id, tag, action, max(note_id) FROM notes "
            "WHERE tag != ? GROUP BY sample_id, tag) WHERE action = ? ORDER BY sample_id, tag",
            (COMMENT, ADD)).fetchall()
    if not rows:
        return empty
    df = pd.DataFrame(rows, columns=["sample_id", "tag"])
    out = df.groupby("sample_id", sort=True)["tag"].agg(tuple).reset_index()
    return out.rename(columns={"tag": "tags"})


def samples_with_tag(exp_dir: Path | str, tag: str) -> set[str]:
    """Ids of the samples that currently carry `tag`."""
    norm = normalize_tag(tag)
    con = _open_for_read(exp_dir)
    if con is None:
        return set()
    with closing(con):
        rows = con.execute(
            "SELECT sample_id FROM (SELECT sample_id, action, max(note_id) FROM notes WHERE tag = ? "
            "GROUP BY sample_id) WHERE action = ?", (norm, ADD)).fetchall()
    return {r[0] for r in rows}


def all_tags(exp_dir: Path | str) -> list[str]:
    """The standard tags followed by every custom tag ever used in this experiment, in first-use order."""
    con = _open_for_read(exp_dir)
    used: list[str] = []
    if con is not None:
        with closing(con):
            used = [t for t, in con.execute(
                "SELECT tag FROM notes WHERE tag != ? GROUP BY tag ORDER BY min(note_id)", (COMMENT,))]
    return list(TAGS) + [t for t in used if t not in TAGS]


def last_note_id(exp_dir: Path | str) -> int:
    """The highest note id (0 when there are none): it changes on every write, so it keys caches."""
    con = _open_for_read(exp_dir)
    if con is None:
        return 0
    with closing(con):
        value = con.execute("SELECT max(note_id) FROM notes").fetchone()[0]
    return int(value or 0)


def orphan_ids(exp_dir: Path | str, known_ids: Iterable[str]) -> set[str]:
    """Sample ids that have notes but are not in `known_ids` (e.g. after the sample table was rebuilt)."""
    con = _open_for_read(exp_dir)
    if con is None:
        return set()
    with closing(con):
        ids = {r[0] for r in con.execute("SELECT DISTINCT sample_id FROM notes")}
    return ids - set(map(str, known_ids))


def _defuse_formula(value: object) -> object:
    # A cell starting with = + - @ (or a tab/CR) runs as a formula in spreadsheet apps: quote it.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(exp_dir: Path | str) -> bytes:
    """The full note history as UTF-8 CSV bytes (header only when there are no notes).

    Free text and author cells that a spreadsheet would run as a formula get a leading apostrophe.
    """
    df = notes_for(exp_dir)
    for col in ("text", "author"):
        df[col] = df[col].map(_defuse_formula)
    return df.to_csv(index=False).encode("utf-8")
