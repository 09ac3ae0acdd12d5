"""The one exception type the command line turns into `error: <what> (<where>)` and exit 2.

Every package raises its own user-facing error type (``model.ModelError``,
``tokenizer.TokenizerError``, ``data.DataError``, ``pretrain.errors.PretrainError``); all
subclass ``ValueError`` and carry a one-line message naming what is wrong and where.
Anything else that escapes is a bug and keeps its traceback.
"""


class PretrainError(ValueError):
    """A user mistake found by pretrain/: bad config, incompatible checkpoint, bad run dir."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the user asked for something wrong"."""
    import model
    import tokenizer
    import data

    return (PretrainError, model.ModelError, tokenizer.TokenizerError, data.DataError)
