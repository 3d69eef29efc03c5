"""mmaudit: audit large image-text corpora for harmful content."""

__version__ = "0.1.0"
