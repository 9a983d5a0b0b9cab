"""The one exception type the CLI turns into a one-line message."""


class LowrankAmtError(Exception):
    """A problem the user can fix: bad input, a missing tool, a wrong config key.

    The message names the file, key or tool and says what to do.
    """
