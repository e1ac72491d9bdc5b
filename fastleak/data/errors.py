from fastleak.errors import InvalidValueError


class DatasetError(InvalidValueError):
    """Files that are missing, corrupt, unsafe or not in the layout a dataset expects; the message is
    one line that names the file and the expected layout."""
