"""Learning: joins served predictions with late labels, learns each label exactly once, publishes snapshots."""
