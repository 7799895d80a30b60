"""Shared test support: real processes on loopback ports, test images, log readers."""
