"""smki: the GB Smart Metering Key Infrastructure (RA, CA and Repository) under the Smart Energy Code."""

__version__ = "0.1.0"
