"""The package's version, in one place: the package, the wheel's metadata and ``live-stt --version`` read it."""

__version__ = "0.1.0"
