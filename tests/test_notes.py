"""Mentor notes: round trip, derived tags, validation, CSV export, durability, and concurrent writers."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from pipeline import notes

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def exp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "exp"
    d.mkdir()
    return d


def _derive(history: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Current tags recomputed from the raw history with plain pandas: latest action per (sample, tag)."""
    h = history[history["tag"] != notes.COMMENT].sort_values("note_id")
    last = h.groupby(["sample_id", "tag"]).tail(1)
    on = last[last["action"] == notes.ADD]
    return {sid: tuple(sorted(g["tag"])) for sid, g in on.groupby("sample_id")}


# ---------------------------------------------------------------- round trip and derived tags

def test_reads_on_a_fresh_experiment_are_empty_and_create_nothing(exp_dir):
    assert notes.notes_for(exp_dir).empty
    assert list(notes.notes_for(exp_dir).columns) == list(notes.NOTE_COLUMNS)
    assert notes.current_tags(exp_dir).empty
    assert notes.samples_with_tag(exp_dir, "label wrong") == set()
    assert notes.last_note_id(exp_dir) == 0
    assert notes.export_csv(exp_dir).decode().strip() == ",".join(notes.NOTE_COLUMNS)
    assert not notes.notes_path(exp_dir).exists()


def test_round_trip_keeps_every_field(exp_dir):
    nid = notes.add_note(exp_dir, "s1", "label wrong", text="looks benign to me", author="Dr. A")
    assert nid == 1 and notes.notes_path(exp_dir) == exp_dir / "notes.sqlite"
    row = notes.notes_for(exp_dir).iloc[0]
    assert (row.note_id, row.sample_id, row.tag, row.action, row.text, row.author) == (
        1, "s1", "label wrong", "add", "looks benign to me", "Dr. A")
    assert row.created.endswith("+00:00")
    assert notes.last_note_id(exp_dir) == 1


def test_tags_are_derived_from_the_latest_note(exp_dir):
    notes.add_note(exp_dir, "a", "Label  Wrong")  # normalised to "label wrong"
    notes.add_note(exp_dir, "a", "artefact", author="x")
    notes.add_note(exp_dir, "b", "hard case")
    notes.add_note(exp_dir, "b", "hard case")  # a second add of the same tag is one tag
    notes.add_note(exp_dir, "c", notes.COMMENT, text="only a comment")
    notes.remove_tag(exp_dir, "a", "label wrong", author="y")
    notes.add_note(exp_dir, "d", "my own tag")
    tags = dict(zip(*notes.current_tags(exp_dir).to_dict("list").values()))
    assert tags == {"a": ("artefact",), "b": ("hard case",), "d": ("my own tag",)}
    assert notes.samples_with_tag(exp_dir, "hard case") == {"b"}
    assert notes.samples_with_tag(exp_dir, "label wrong") == set()
    notes.add_note(exp_dir, "a", "label wrong")  # re-added after removal
    assert notes.samples_with_tag(exp_dir, "LABEL WRONG") == {"a"}
    assert notes.clear_tags(exp_dir, "a", author="z") == ["artefact", "label wrong"]
    assert "a" not in set(notes.current_tags(exp_dir)["sample_id"])
    history = notes.notes_for(exp_dir)
    assert len(history) == 10  # nothing is ever deleted
    assert _derive(history) == dict(zip(*notes.current_tags(exp_dir).to_dict("list").values()))
    assert notes.all_tags(exp_dir) == [*notes.TAGS, "my own tag"]
    assert list(notes.notes_for(exp_dir, ["b", "zzz"])["sample_id"]) == ["b", "b"]


def test_unknown_ids_are_kept_unless_known_ids_is_given(exp_dir):
    notes.add_note(exp_dir, "gone-123", "hard case")
    assert notes.orphan_ids(exp_dir, ["s1", "s2"]) == {"gone-123"}
    with pytest.raises(ValueError, match="`sample_id`.*samples.parquet.*'nope'"):
        notes.add_note(exp_dir, "nope", "hard case", known_ids={"s1"})
    notes.add_note(exp_dir, "s1", "hard case", known_ids={"s1"})


@pytest.mark.parametrize("kwargs, match", [
    (dict(sample_id="s", tag=""), "argument `tag`.*non-empty.*Received: ''"),
    (dict(sample_id="s", tag="   "), "argument `tag`"),
    (dict(sample_id="s", tag=None), "argument `tag`"),
    (dict(sample_id="", tag="artefact"), "argument `sample_id`"),
    (dict(sample_id=12, tag="artefact"), "argument `sample_id`"),
    (dict(sample_id="s", tag="x" * 65), "argument `tag`.*at most 64"),
    (dict(sample_id="s", tag="artefact", text="x" * 5001), "argument `text`.*at most 5000"),
    (dict(sample_id="s", tag="artefact", author=3), "argument `author`.*a string"),
    (dict(sample_id="s", tag=notes.COMMENT, text=""), "argument `text`.*non-empty"),
])
def test_bad_input_names_the_argument(exp_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        notes.add_note(exp_dir, **kwargs)
    assert not notes.notes_path(exp_dir).exists()


def test_missing_experiment_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="argument `exp_dir`.*existing experiment folder"):
        notes.add_note(tmp_path / "nope", "s", "artefact")
    assert not (tmp_path / "nope").exists()


def test_csv_export_round_trips_and_defuses_formulas(exp_dir):
    notes.add_note(exp_dir, "s1", "artefact", text='ruler, "marker" in corner\nsecond line', author="Dr. B")
    notes.add_note(exp_dir, "s2", notes.COMMENT, text="=HYPERLINK(\"http://x\")", author="@me")
    notes.remove_tag(exp_dir, "s1", "artefact")
    back = pd.read_csv(io.BytesIO(notes.export_csv(exp_dir)), keep_default_na=False)
    assert list(back.columns) == list(notes.NOTE_COLUMNS)
    assert list(back["action"]) == ["add", "add", "remove"]
    assert back.loc[0, "text"] == 'ruler, "marker" in corner\nsecond line'
    assert back.loc[1, "text"].startswith("'=") and back.loc[1, "author"] == "'@me"


# ---------------------------------------------------------------- durability

def _run_python(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with the repo importable; stderr is kept for the assertion."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


_READER = """
import json, sys
from pipeline import notes
h = notes.notes_for(sys.argv[1])
print(json.dumps([list(h["sample_id"]), list(h["text"]), sorted(notes.samples_with_tag(sys.argv[1], "hard case"))]))
"""


def test_notes_survive_reopening_in_another_process(exp_dir):
    notes.add_note(exp_dir, "s1", "hard case", text="t", author="a")
    con = sqlite3.connect(notes.notes_path(exp_dir))
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    out = _run_python(_READER, str(exp_dir))
    assert out.returncode == 0, out.stderr
    ids, texts, tagged = json.loads(out.stdout.strip().splitlines()[-1])
    assert ids == ["s1"] and texts == ["t"] and tagged == ["s1"]


def test_a_corrupt_file_raises_a_database_error(exp_dir):
    notes.notes_path(exp_dir).write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        notes.current_tags(exp_dir)


# ---------------------------------------------------------------- concurrency

N_PER_WRITER = 200


def _writer(exp_dir: str, worker: int, start, queue) -> None:
    """Add N_PER_WRITER notes (and some removals) as fast as possible; report errors instead of dying."""
    errors = []
    start.wait()
    for i in range(N_PER_WRITER):
        try:
            sid = f"s{i % 50}"
            notes.add_note(exp_dir, sid, notes.TAGS[(i + worker) % 4], text=f"w{worker}-{i}", author=f"mentor{worker}")
            if i % 10 == 9:
                notes.remove_tag(exp_dir, sid, notes.TAGS[i % 4], author=f"mentor{worker}", text=f"w{worker}-rm{i}")
            if i % 25 == 0:
                notes.current_tags(exp_dir)  # readers interleave with writers
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            errors.append(f"{type(exc).__name__}: {exc}")
    queue.put((worker, errors))


def _check_nothing_lost(exp_dir: Path, n_writers: int) -> None:
    history = notes.notes_for(exp_dir)
    adds = history[history["action"] == "add"]
    expected = {f"w{w}-{i}" for w in range(n_writers) for i in range(N_PER_WRITER)}
    assert set(adds["text"]) == expected and len(adds) == len(expected)
    removes = history[history["action"] == "remove"]
    assert len(removes) == n_writers * (N_PER_WRITER // 10)
    assert history["note_id"].is_unique and history["note_id"].is_monotonic_increasing
    derived = _derive(history)
    assert derived == dict(zip(*notes.current_tags(exp_dir).to_dict("list").values()))
    assert notes.last_note_id(exp_dir) == int(history["note_id"].max())


_WRITER = """
import json, sys, time
from pathlib import Path
from tests.test_notes import _writer
exp_dir, worker, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])

class _Start:
    def wait(self):
        deadline = time.time() + 120
        while not go.exists() and time.time() < deadline:
            time.sleep(0.005)

class _Q(list):
    def put(self, item):
        self.append(item)

q = _Q()
_writer(exp_dir, worker, _Start(), q)
print(json.dumps(q[0][1]))
"""


def test_two_processes_writing_at_once_lose_nothing(exp_dir, tmp_path):
    # The file does not exist yet: both processes also race to create it and its schema.
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(exp_dir), str(w), str(go)], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(2)]
    time.sleep(0.5)
    go.write_text("go")  # both start writing at once
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == [], out  # no "database is locked", no other error
    _check_nothing_lost(exp_dir, 2)


def test_threads_writing_at_once_lose_nothing(exp_dir):
    start = threading.Event()

    class _Q(list):
        def put(self, item):
            self.append(item)

    queue = _Q()
    threads = [threading.Thread(target=_writer, args=(str(exp_dir), w, start, queue)) for w in range(3)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(300)
    assert sorted(queue) == [(0, []), (1, []), (2, [])], queue
    _check_nothing_lost(exp_dir, 3)
