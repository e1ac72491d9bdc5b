"""Exceptions for input fastleak cannot use. Their messages name the argument and what was expected.

They subclass ValueError and TypeError, so ``except ValueError`` keeps working; the command line
shows them as one-line user errors, while any other exception is an internal error.
"""


class InvalidInputError(Exception):
    """Input fastleak cannot use: an option, argument, model, observation or file."""


class InvalidValueError(InvalidInputError, ValueError):
    """An argument of the right type with a value fastleak cannot use."""


class InvalidTypeError(InvalidInputError, TypeError):
    """An argument of a type fastleak cannot use."""
