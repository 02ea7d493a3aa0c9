"""The one exception the CLI turns into a clear message and exit code 2."""


class ArenaError(Exception):
    """A fault in the user's input (file, step, tensor, option), one message per fault."""

    def __init__(self, *faults: str):
        self.faults = list(faults)
        super().__init__("\n".join(self.faults))


def where(file=None, line=None, step=None, tensor=None) -> str:
    """'file:line: step 'rope', tensor 'attn': ' -- the location prefix of a fault."""
    parts = []
    if file is not None:
        parts.append(f"{file}:{line}" if line is not None else str(file))
    if step is not None:
        parts.append(f"step '{step}'")
    if tensor is not None:
        parts.append(f"tensor '{tensor}'")
    return ": ".join(parts) + ": " if parts else ""


def show(value, width: int = 60) -> str:
    """A value from the user's file as a message quotes it: one line, at most `width` characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[:width - 3] + "..."
