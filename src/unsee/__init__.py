"""unsee: teach text-to-image diffusion models to stop making what people flag."""

from importlib.metadata import PackageNotFoundError, version


def package_version(name: str) -> str | None:
    """The installed version of the distribution `name`, or None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# running from a source tree that was never installed: a version that says so
__version__ = package_version("unsee") or "0.0.0+unknown"
