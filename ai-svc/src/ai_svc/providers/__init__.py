"""Idea providers: Gemini, and the offline local provider."""
