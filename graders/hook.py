"""Run nbgrader's own autograde in OneLab's sandbox: the formgrader's "autograde" button and
`nbgrader autograde` then grade exactly as `onelab grade` does, one submission at a time.

A course's ``nbgrader_config.py`` says::

    from graders.hook import use_sandbox
    use_sandbox(c)

The image and limits come from the OneLab settings (``grading``), or from the arguments.
"""

from __future__ import annotations

from typing import Any


def pipeline(config: Any, execute: type) -> None:
    """nbgrader's Autograde steps with `execute` in place of its Execute: the sandbox here, or
    the confined grading service's RemoteExecute (hub/formgrader_inside.py)."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearOutput,
        DeduplicateIds,
        IgnorePattern,
        LimitOutput,
        OverwriteCells,
        OverwriteKernelspec,
        SaveAutoGrades,
    )

    from graders.preprocessor import RestoreSourceMetadata

    config.Autograde.sanitize_preprocessors = [
        ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoreSourceMetadata,
        OverwriteCells, CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [
        execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]


def apply(config: Any, opts: Any) -> None:
    """Swap nbgrader's Execute for the sandbox in Autograde, keep every other step its own."""
    from graders.preprocessor import SandboxedExecute

    pipeline(config, SandboxedExecute)
    config.SandboxedExecute.image = opts.image
    config.SandboxedExecute.limits = opts.limits.model_dump()
    config.SandboxedExecute.run = opts.run


def use_sandbox(c: Any, image: str | None = None, **limits: Any) -> None:
    """For a course's nbgrader_config.py: `c` is the config nbgrader is loading."""
    from graders.grade import Options
    from images.table import grading_image
    from onelab.course import courses_dir, load_course
    from onelab.settings import load

    s = load()
    if image is None:  # the course's spec may name one (by the config's course_id)
        course_id = c.CourseDirectory.get("course_id") if "CourseDirectory" in c else None
        spec = (s.courses_dir or courses_dir()) / str(course_id) / "course.yml"
        image = grading_image(s, load_course(spec).image if course_id and spec.exists()
                              else "learner")
    apply(c, Options.from_settings(s.grading, image, **limits))
