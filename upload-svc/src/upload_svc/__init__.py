"""upload-svc: image intake, storage and derived images for IdeaSnap."""
