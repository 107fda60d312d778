"""Evidence and decision: corpus and pairs scans, the gap probe, model shapes, estimates, decide(), `tune-wizard plan`."""
