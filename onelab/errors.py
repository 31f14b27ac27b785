"""Errors an operator can act on.

Every error OneLab raises on purpose is a :class:`OneLabError` whose message is one line that
says what is wrong and what to do; the CLI prints it as ``onelab: <message>`` and exits 2, with
no traceback.
"""


class OneLabError(Exception):
    """A problem the operator can fix; the message says how, in one line."""


class SettingsError(OneLabError):
    """A setting is unknown or has a bad value."""


class DockerUnavailable(OneLabError):
    """No Docker Engine answers."""


class ImageMissing(OneLabError):
    """An image the platform needs has not been built."""
