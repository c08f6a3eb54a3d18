"""The base class of errors about the user's inputs, files and settings.

Such an error's message names the file (or param) and the problem; the CLI prints it and
exits with status 1 instead of a traceback. Bugs stay ordinary exceptions with tracebacks.
"""


class PipelineError(ValueError):
    pass
