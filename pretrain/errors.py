"""The one exception type the command line turns into `error: <what> (<where>)` and exit 2.

Every package raises its own user-facing error type (``model.ModelError``,
``tokenizer.TokenizerError``, ``data.DataError``, ``pretrain.errors.PretrainError``); all
subclass ``ValueError`` and carry a one-line message naming what is wrong and where.
Anything else that escapes is a bug and keeps its traceback.
"""

import sys


class PretrainError(ValueError):
    """A user mistake found by pretrain/: bad config, incompatible checkpoint, bad run dir."""


# package -> name of its user-error class
_ERROR_TYPES = {"model": "ModelError", "tokenizer": "TokenizerError", "data": "DataError"}


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the user asked for something wrong".

    Only packages already imported are looked at: one never imported cannot have raised, and
    importing `model` would pull in torch just to report a tokenizer mistake."""
    found = [getattr(sys.modules[pkg], name) for pkg, name in _ERROR_TYPES.items()
             if pkg in sys.modules]
    return (PretrainError, *found)
