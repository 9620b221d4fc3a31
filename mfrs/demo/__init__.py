"""The embedded default data set: a template anatomy and a simulated ds000117-like BIDS set."""
