"""An upgraded image brings a newer nbgrader: the grading service migrates an older course
gradebook when it starts, keeping the old file and every row (hub/formgrader_inside.py)."""

from __future__ import annotations

import sqlite3

from hub.formgrader_inside import upgrade_gradebook


def _old_gradebook(path) -> None:
    """A gradebook as nbgrader 0.6 left it (revision 282d30a0218e: no course table yet),
    made from a current one by undoing that revision's changes."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{path}", "onelab-101") as gb:
        gb.add_student("amy", first_name="에이미")
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE assignment_old AS SELECT id, name, duedate FROM assignment;"
            "DROP TABLE assignment; ALTER TABLE assignment_old RENAME TO assignment;"
            "DROP TABLE course; UPDATE alembic_version SET version_num = '282d30a0218e';")


def test_an_older_gradebook_is_migrated_with_a_copy_kept(tmp_path):
    db = tmp_path / "gradebook.db"
    _old_gradebook(db)
    before = db.read_bytes()
    assert upgrade_gradebook(db) == "282d30a0218e -> e43177bfe90b"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == \
            [("e43177bfe90b",)]
        assert con.execute("SELECT id, first_name FROM student").fetchall() == [("amy", "에이미")]
        cols = [r[1] for r in con.execute("PRAGMA table_info(assignment)")]
        assert "course_id" in cols
    kept, = tmp_path.glob("gradebook.db.*-before-upgrade")
    assert kept.read_bytes() == before
    assert upgrade_gradebook(db) is None  # current now: nothing to do, no second copy
    assert len(list(tmp_path.glob("gradebook.db.*"))) == 1


def test_no_gradebook_yet_is_left_alone(tmp_path):
    assert upgrade_gradebook(tmp_path / "gradebook.db") is None
    assert list(tmp_path.iterdir()) == []


def test_the_upgrade_leaves_this_process_logging_alone(tmp_path):
    """nbgrader's alembic environment calls logging.config.fileConfig, which disables every
    logger that exists: grading's own log capture went silent after an upgrade in-process."""
    import logging

    before = logging.getLogger("traitlets")
    db = tmp_path / "gradebook.db"
    _old_gradebook(db)
    assert upgrade_gradebook(db)
    assert not before.disabled and not logging.getLogger("traitlets").disabled
