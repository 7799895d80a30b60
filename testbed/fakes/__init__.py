"""Fakes of services the tests cannot reach: only Google's Gemini API."""
