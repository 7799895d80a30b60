"""ai-svc: ideas about a photo, from Gemini or the offline local provider."""
