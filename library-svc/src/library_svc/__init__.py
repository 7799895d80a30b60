"""library-svc: what a signed-in person keeps (history, drafts, sync, tier, deletion)."""
