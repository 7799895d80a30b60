"""gateway: IdeaSnap's only public service."""
