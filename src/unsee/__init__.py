"""unsee: teach text-to-image diffusion models to stop making what people flag."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unsee")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
