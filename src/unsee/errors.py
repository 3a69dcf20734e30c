"""The exception type (and its subclasses) that the command line turns into a one-line
message and exit code 2."""


class UnseeError(Exception):
    """Bad input or a missing resource, explained in one line for the user.

    Raised at the boundary where input is checked; `unsee` prints the message and exits
    with status 2. Anything else that escapes is a bug and keeps its traceback.
    """


class SettingsMismatch(UnseeError):
    """An output folder holds results made with other settings than this run's."""
