"""User-facing errors: raised for bad input so the CLI and stages can print one clear line."""


class AlignflowError(Exception):
    """A problem the user can fix (bad params, missing path, malformed data)."""


class ParamsError(AlignflowError, ValueError):
    """A params or profile file holds an unknown key or a bad value."""
