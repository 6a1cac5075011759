"""User-facing errors: one clear line, no traceback needed to understand them."""


class SimexplainError(ValueError):
    """A problem with the user's input (file, shape, name, checkpoint, parameter).

    The command line prints ``str(error)`` as one line and exits with status 1.
    """
