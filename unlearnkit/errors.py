"""The one exception type users see: its message is a single line that names the bad
value and what to do. The CLI prints it without a traceback."""


class UnlearnkitError(ValueError):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
