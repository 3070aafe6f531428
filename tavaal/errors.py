"""Domain exceptions. Each carries one message that names the offending key, file or index."""


class TavaalError(Exception):
    """Base class: the CLI turns these into one clear line and a non-zero exit."""


class ConfigError(TavaalError):
    """A configuration key or value is invalid."""


class DatasetError(TavaalError):
    """A dataset is unknown, missing on disk, or malformed."""


class IndexFileError(TavaalError):
    """A labeled/scores index file is corrupt or violates an invariant."""


class CheckpointError(TavaalError):
    """A model checkpoint is missing, corrupt or does not match the experiment."""


class ReadmeError(TavaalError):
    """The README has no single generated section to replace (its markers are missing or
    repeated)."""


class LabelingError(TavaalError):
    """A labeling request, its to_label.csv or a person's labels file is missing, incomplete or
    malformed, or the labeling page cannot be served or captured."""
