"""The one exception family users see.

Every error caused by bad input (a malformed file, an out-of-range token, a prompt past
the context, an accelerator fault) is a :class:`SpeedLLMError` whose message is one line
naming the problem. The CLI prints ``speedllm: error: <message>`` and exits nonzero,
without a traceback.
"""


class SpeedLLMError(Exception):
    """Bad input or a failed run, described in one line."""


class CheckpointError(SpeedLLMError, ValueError):
    """A model or tokenizer file is missing, truncated or inconsistent."""


class InputError(SpeedLLMError, ValueError):
    """A prompt, token id, step count or option is out of range."""


class AcceleratorError(SpeedLLMError, RuntimeError):
    """The accelerator (board or simulation) reported an error or timed out."""
