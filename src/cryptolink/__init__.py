"""cryptolink: healthy, gap-free exchange connections for months."""

__version__ = "0.1.0"
