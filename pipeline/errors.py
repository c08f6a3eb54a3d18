"""The base class of errors about the user's inputs, files and settings.

Such an error's message names the file (or param) and the problem; the CLI prints it and
exits with status 1 instead of a traceback. Bugs stay ordinary exceptions with tracebacks.
"""


class PipelineError(ValueError):
    pass


def user_message(exc: BaseException) -> str:
    """The message of a user error. One raised in a DataLoader worker process (an image that does
    not decode in training) comes back from torch as "Caught X in DataLoader worker process N.
    Original Traceback ... module.X: message": only the message is the user's."""
    text = str(exc)
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    if text.startswith(f"Caught {type(exc).__name__} in DataLoader worker") and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


def one_line(exc: BaseException) -> str:
    """A library's exception (torch, onnx, onnxruntime, h5py) as the detail of a one-line message:
    its type and first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
